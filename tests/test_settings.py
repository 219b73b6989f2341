"""The global switches (minigpt/settings.py): one object, checked values, `using` restores them."""
import numpy as np
import pytest

import minigpt
from minigpt import dispatch
from minigpt.autograd import Tensor


def test_the_switches_are_one_object_that_the_library_reads():
    assert minigpt.config is minigpt.settings.config
    with minigpt.using(ops="reference"):
        assert dispatch.current_mode() == "reference"
        assert set(minigpt.implementations().values()) == {"reference"}
    with minigpt.using(grad_enabled=False):
        assert not minigpt.is_grad_enabled()
        y = Tensor(np.ones(3), requires_grad=True) * 2
        assert not y.requires_grad          # no graph recorded
    assert minigpt.is_grad_enabled()


def test_using_restores_every_switch_after_an_exception():
    before = repr(minigpt.config)
    with pytest.raises(RuntimeError):
        with minigpt.using(ops="fast", grad_enabled=False, num_threads=1):
            assert minigpt.config.num_threads == 1
            raise RuntimeError("inside")
    assert repr(minigpt.config) == before


@pytest.mark.parametrize("switch, value, message", [
    ("ops", "fastest", "unknown ops mode 'fastest': expected one of auto, fast, reference"),
    ("backend", "torch", "unknown backend 'torch'"),
    ("grad_enabled", "no", "grad_enabled must be True or False, got 'no'"),
    ("num_threads", 0, "num_threads must be None or an integer >= 1, got 0"),
])
def test_a_bad_value_is_refused_and_changes_nothing(switch, value, message):
    before = repr(minigpt.config)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        with minigpt.using(**{switch: value}):
            pass
    assert repr(minigpt.config) == before


def test_an_unknown_switch_names_the_real_ones():
    with pytest.raises(AttributeError, match="no switch 'grad_mode'.*grad_enabled, ops"):
        minigpt.config.grad_mode = False


def test_no_grad_and_use_are_the_same_switches():
    with minigpt.no_grad():
        assert minigpt.config.grad_enabled is False
    with minigpt.use("reference"):
        assert minigpt.config.ops == "reference"
    assert minigpt.config.grad_enabled is True and minigpt.config.ops == "auto"
