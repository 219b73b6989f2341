"""safetensors IO and checkpoint directories: round trips, atomicity, clear errors."""
import json
import os

import numpy as np
import pytest

from minigpt import GPT, GPTConfig, safetensors
from minigpt.training import CheckpointError, load_checkpoint, resolve_checkpoint, save_checkpoint
from minigpt.optim import Adam
from minigpt.runfolder import RunFolderError


def small_model():
    return GPT(GPTConfig(vocab_size=11, n_ctx=8, n_layer=1, n_embd=8, n_head=2))


def test_safetensors_round_trip_dtypes(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1.5, -2.0]),
              "c": np.array([[1, 2]], dtype=np.int64), "d": np.array([True, False])}
    safetensors.save_file(arrays, tmp_path / "x.safetensors", metadata={"k": "v"})
    back = safetensors.load_file(tmp_path / "x.safetensors")
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])
        assert back[k].dtype == arrays[k].dtype
    assert safetensors.load_metadata(tmp_path / "x.safetensors") == {"k": "v"}


def test_safetensors_reads_what_the_reference_library_writes(tmp_path):
    st = pytest.importorskip("safetensors.numpy", reason="the safetensors package is not installed")
    arrays = {"w": np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)}
    st.save_file(arrays, str(tmp_path / "ref.safetensors"))
    np.testing.assert_array_equal(safetensors.load_file(tmp_path / "ref.safetensors")["w"], arrays["w"])
    safetensors.save_file(arrays, tmp_path / "ours.safetensors")
    np.testing.assert_array_equal(st.load_file(str(tmp_path / "ours.safetensors"))["w"], arrays["w"])


@pytest.mark.parametrize("cut", [4, 20, -3])
def test_truncated_safetensors_names_the_file(tmp_path, cut):
    path = tmp_path / "t.safetensors"
    safetensors.save_file({"w": np.zeros((10, 10), dtype=np.float32)}, path)
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(safetensors.SafetensorsError, match="t.safetensors"):
        safetensors.load_file(path)


def test_checkpoint_round_trip_with_optimizer(tmp_path):
    model = small_model()
    opt = Adam(model.parameters(), lr=1e-3)
    idx = np.array([[1, 2, 3, 4]])
    model.loss(idx[:, :-1], idx[:, 1:]).backward()
    opt.step()
    save_checkpoint(tmp_path / "ckpt", model, None, opt, {"step": 1})
    model2, tok, state = load_checkpoint(tmp_path / "ckpt", with_optimizer_state=True)
    assert tok is None and state["step"] == 1 and model2.config == model.config
    for (n, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=n)
    opt2 = Adam(model2.parameters(), lr=1e-3)
    opt2.load_state_dict(state["optimizer"])
    assert opt2.t == 1
    for a, b in zip(opt.m + opt.v, opt2.m + opt2.v):
        np.testing.assert_array_equal(a, b)


def test_run_directory_resolves_to_its_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "run" / "ckpt", small_model(), state={"step": 0})
    assert resolve_checkpoint(tmp_path / "run") == tmp_path / "run" / "ckpt"


def test_save_replaces_the_old_checkpoint_and_leaves_no_temporaries(tmp_path):
    m1, m2 = small_model(), GPT(GPTConfig(vocab_size=11, n_ctx=8, n_layer=1, n_embd=8, n_head=2), seed=9)
    save_checkpoint(tmp_path / "ckpt", m1, state={"step": 1})
    save_checkpoint(tmp_path / "ckpt", m2, state={"step": 2})
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]
    _, _, state = load_checkpoint(tmp_path / "ckpt")
    assert state["step"] == 2


def test_crash_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "ckpt", small_model(), state={"step": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors, "save_file", boom)
    with pytest.raises(RunFolderError, match="disk full"):   # a named error, not a traceback
        save_checkpoint(tmp_path / "ckpt", small_model(), state={"step": 2})
    monkeypatch.undo()
    _, _, state = load_checkpoint(tmp_path / "ckpt")
    assert state["step"] == 1
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_crash_between_renames_is_recovered(tmp_path):
    save_checkpoint(tmp_path / "ckpt", small_model(), state={"step": 3})
    os.replace(tmp_path / "ckpt", tmp_path / ".ckpt.old")  # as if killed between the renames
    _, _, state = load_checkpoint(tmp_path / "ckpt")
    assert state["step"] == 3


def test_partial_and_corrupt_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing")
    save_checkpoint(tmp_path / "ckpt", small_model(), state={"step": 1})
    (tmp_path / "ckpt" / "state.json").unlink()
    with pytest.raises(CheckpointError, match="missing state.json"):
        load_checkpoint(tmp_path / "ckpt")
    save_checkpoint(tmp_path / "ckpt", small_model(), state={"step": 1})
    weights = tmp_path / "ckpt" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(tmp_path / "ckpt")
    save_checkpoint(tmp_path / "ckpt", small_model(), state={"step": 1})
    (tmp_path / "ckpt" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        load_checkpoint(tmp_path / "ckpt")


def test_shape_mismatch_names_the_parameter(tmp_path):
    save_checkpoint(tmp_path / "ckpt", small_model(), state={"step": 1})
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    cfg["n_embd"] = 16
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="tokens_embed.weight"):
        load_checkpoint(tmp_path / "ckpt")


def test_a_link_named_ckpt_never_costs_the_real_checkpoint(tmp_path):
    """A (dangling) link `ckpt` beside the only complete checkpoint `.ckpt.old`: tidying keeps
    .ckpt.old (the link is not a complete checkpoint), and the link's target is never touched."""
    from minigpt.runfolder import clean_leftovers
    save_checkpoint(tmp_path / "ckpt", small_model(), state={"step": 4})
    os.replace(tmp_path / "ckpt", tmp_path / ".ckpt.old")
    (tmp_path / "ckpt").symlink_to(tmp_path / "nowhere")
    clean_leftovers(tmp_path, "ckpt", log=lambda m: None)
    assert (tmp_path / ".ckpt.old" / "state.json").is_file()
    assert load_checkpoint(tmp_path / ".ckpt.old")[2]["step"] == 4
