"""Adam as in GPT-1's release, its schedules and gradient clipping."""
import math

import numpy as np
import pytest

from minigpt.nn import Parameter
from minigpt.optim import Adam, clip_grad_norm, warmup_cosine, warmup_linear


def test_one_adam_step_by_hand():
    """Two updates computed by hand with the release's formula, decay on the matrix only."""
    W = Parameter(np.array([[1.0, -2.0], [0.5, 3.0]]))
    b = Parameter(np.array([0.1, -0.1]))
    opt = Adam([W, b], lr=0.1, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01, max_grad_norm=None)
    gW = np.array([[0.2, -0.4], [1.0, 0.0]])
    gb = np.array([-0.3, 0.5])
    W0, b0 = W.data.copy(), b.data.copy()
    mW, vW, mb, vb = np.zeros((2, 2)), np.zeros((2, 2)), np.zeros(2), np.zeros(2)
    for t in (1, 2):
        W.grad, b.grad = gW.copy(), gb.copy()
        opt.step()
        mW = 0.9 * mW + 0.1 * gW
        vW = 0.99 * vW + 0.01 * gW * gW
        mb = 0.9 * mb + 0.1 * gb
        vb = 0.99 * vb + 0.01 * gb * gb
        lr_t = 0.1 * math.sqrt(1 - 0.99 ** t) / (1 - 0.9 ** t)
        W0 = W0 - lr_t * (mW / (np.sqrt(vW) + 1e-8) + 0.01 * W0)
        b0 = b0 - lr_t * (mb / (np.sqrt(vb) + 1e-8))  # bias: never decayed
        np.testing.assert_allclose(W.data, W0, rtol=1e-12)
        np.testing.assert_allclose(b.data, b0, rtol=1e-12)


def test_float32_parameters_stay_float32():
    p = Parameter(np.ones((3, 3), dtype=np.float32))
    opt = Adam([p], lr=1e-3)
    p.grad = np.ones((3, 3), dtype=np.float32)
    opt.step()
    assert p.dtype == np.float32 and opt.m[0].dtype == np.float32


def test_clip_grad_norm_scales_to_max_norm():
    a, b = Parameter(np.zeros(3)), Parameter(np.zeros(4))
    a.grad, b.grad = np.array([3.0, 0.0, 0.0]), np.array([0.0, 4.0, 0.0, 0.0])
    norm = clip_grad_norm([a, b], 1.0)
    assert norm == pytest.approx(5.0)
    total = math.sqrt((a.grad ** 2).sum() + (b.grad ** 2).sum())
    assert total == pytest.approx(1.0, rel=1e-5)
    a.grad = np.array([0.3, 0.0, 0.0]); b.grad = np.zeros(4)
    clip_grad_norm([a, b], 1.0)
    np.testing.assert_array_equal(a.grad, [0.3, 0, 0])  # below the limit: untouched


def test_warmup_cosine_shape():
    s = warmup_cosine(warmup=10, total=110)
    assert s(0) == 0 and s(5) == pytest.approx(0.5) and s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.5) and s(110) == pytest.approx(0.0, abs=1e-12)
    values = [s(t) for t in range(10, 111)]
    assert all(x >= y for x, y in zip(values, values[1:]))


def test_warmup_linear_is_the_release_formula():
    total = 1000
    s = warmup_linear(total, warmup=0.002)
    for t in (0, 1, 2, 3, 500, 999, 1000):
        x = t / total
        expected = (x / 0.002 if x < 0.002 else 1.0) * (1 - x)
        assert s(t) == pytest.approx(expected)


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((2, 3)) for _ in range(4)]

    def run(split):
        p = Parameter(np.ones((2, 3)))
        opt = Adam([p], lr=0.01)
        for i, g in enumerate(grads):
            if i == split:
                state = opt.state_dict()
                p2 = Parameter(p.data.copy())
                opt = Adam([p2], lr=0.01)
                opt.load_state_dict(state)
                p = p2
            p.grad = g.copy()
            opt.step()
        return p.data

    np.testing.assert_array_equal(run(None), run(2))


def test_bad_arguments():
    with pytest.raises(ValueError):
        Adam([], lr=0.1)
    with pytest.raises(ValueError):
        Adam([Parameter(np.zeros(2))], lr=-1)
    opt = Adam([Parameter(np.zeros(2))])
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict({**opt.state_dict(), "m": [np.zeros(3)], "v": [np.zeros(3)]})
