"""Model specs: presets, user functions, .keras files, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from learnae.errors import UserError
from learnae.training import ModelSpecError, load_model, tensor_specs


@pytest.mark.parametrize("spec, low, high", [
    ("digits-mlp", 15_000, 20_000), ("digits-cnn", 35_000, 40_000), ("digits-cnn-large", 2_000_000, 5_000_000),
])
def test_presets_build_for_digits(keras, spec, low, high):
    model = load_model(spec, seed=0)
    assert low <= model.count_params() <= high
    assert tuple(model.input_shape) == (None, 8, 8, 1) and tuple(model.output_shape) == (None, 10)
    probs = keras.ops.convert_to_numpy(model(np.zeros((2, 8, 8, 1), np.float32)))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


# The paper's models (Greydanus & Kobak, ICML 2024; MLPBase and ConvBase of its reference code):
# its notebook prints "Initialized MLPBase model with 15210 parameters" and "ConvBase ... 5210".
# MLP: 40*100+100 + 100*100+100 + 100*10+10 = 15,210.
# CNN: conv 1->25 k5 (150) + 25->25 k3 (1,900) + 25->25 k3 (1,900) + linear 125->10 (1,260) = 5,210.
@pytest.mark.parametrize("spec, params, per_tensor", [
    ("mnist1d-mlp", 15_210, [(40, 100), (100,), (100, 100), (100,), (100, 10), (10,)]),
    ("mnist1d-cnn", 5_210, [(5, 1, 25), (25,), (3, 25, 25), (25,), (3, 25, 25), (25,), (125, 10), (10,)]),
])
def test_mnist1d_presets_are_the_papers_models(keras, spec, params, per_tensor):
    from learnae.training.optim import is_probability_output

    model = load_model(spec, seed=0)
    assert model.count_params() == params
    assert [shape for _, shape, _ in tensor_specs(model)] == per_tensor
    assert tuple(model.input_shape) == (None, 40, 1) and tuple(model.output_shape) == (None, 10)
    # logits, like the paper's models: learnae then trains them with from_logits=True
    assert not is_probability_output(model)
    # PyTorch's default initialisation: kernels and biases uniform in +-1/sqrt(fan_in)
    weights = model.get_weights()
    for kernel, bias in zip(weights[::2], weights[1::2]):
        bound = 1 / np.sqrt(np.prod(kernel.shape[:-1]))
        for w in (kernel, bias):
            assert 0.8 * bound < np.abs(w).max() <= bound * (1 + 1e-6)


def test_mnist1d_mlp_is_residual_like_the_papers(keras):
    # MLPBase computes h1 = relu(W1 x); h = h1 + relu(W2 h1); out = W3 h
    model = load_model("mnist1d-mlp", seed=2)
    w1, b1, w2, b2, w3, b3 = model.get_weights()
    x = np.random.default_rng(0).normal(size=(4, 40, 1)).astype(np.float32)
    h1 = np.maximum(x[..., 0] @ w1 + b1, 0)
    expected = (h1 + np.maximum(h1 @ w2 + b2, 0)) @ w3 + b3
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec", ["mnist1d-mlp", "mnist1d-cnn"])
def test_mnist1d_presets_learn_with_the_trainer(keras, spec):
    from learnae.data import load_dataset, split_dataset
    from learnae.training import KerasTrainer

    parts = split_dataset(load_dataset("mnist1d"), seed=0)
    train = parts.train.subset(np.arange(1000))
    trainer = KerasTrainer.from_spec(spec, train.x, train.y, seed=0, optimizer="adam", learning_rate=0.01,
                                     batch_size=100)
    loss0, acc0 = trainer.evaluate(train.x, train.y)
    trainer.train_steps(40)  # 4 epochs of 1,000 samples
    loss, acc = trainer.evaluate(train.x, train.y)
    assert acc0 < 0.2 and loss < 0.8 * loss0 and acc > 0.35


def test_same_seed_same_initial_weights(keras):
    a, b, c = load_model("digits-cnn", seed=3), load_model("digits-cnn", seed=3), load_model("digits-cnn", seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    assert not all(np.array_equal(x, y) for x, y in zip(a.get_weights(), c.get_weights()))


def _error(spec) -> str:
    with pytest.raises(UserError) as info:
        load_model(spec)
    assert isinstance(info.value, ModelSpecError)
    assert repr(spec.strip()) in str(info.value)
    return str(info.value)


def test_unknown_preset_lists_the_presets(keras):
    msg = _error("digits-transformer")
    assert "digits-mlp" in msg and "digits-cnn" in msg


def test_missing_module(keras):
    assert "no module named 'no_such_module_xyz'" in _error("no_such_module_xyz:build")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text(textwrap.dedent("""
        import keras

        def build():
            return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                     keras.layers.Dense(10)])

        def not_a_model():
            return "hello"

        def broken():
            raise RuntimeError("boom")

        VALUE = 3
    """))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("mymodels", None)


def test_module_function_spec(keras, user_module):
    model = load_model("mymodels:build", seed=0)
    assert model.count_params() == 650
    assert load_model(f"{user_module / 'mymodels.py'}:build").count_params() == 650


@pytest.mark.parametrize("spec, fragment", [
    ("mymodels:nope", "has no function 'nope'"),
    ("mymodels:VALUE", "has no function 'VALUE'"),
    ("mymodels:not_a_model", "not a keras.Model"),
    ("mymodels:broken", "RuntimeError: boom"),
    ("missing_file.py:build", "no such file"),
    ("mymodels:", "not module:function"),
])
def test_bad_function_specs(keras, user_module, spec, fragment):
    assert fragment in _error(spec)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_keras_file_spec(keras, tmp_path):
    model = load_model("digits-mlp", seed=5)
    model.save(tmp_path / "m.keras")
    loaded = load_model(str(tmp_path / "m.keras"), seed=99)
    assert all(np.array_equal(x, y) for x, y in zip(model.get_weights(), loaded.get_weights()))
    assert tensor_specs(loaded) == tensor_specs(model)


def test_bad_keras_files(keras, tmp_path):
    assert "no such .keras file" in _error(str(tmp_path / "absent.keras"))
    (tmp_path / "junk.keras").write_bytes(b"this is not a zip")
    assert "cannot load" in _error(str(tmp_path / "junk.keras"))


_SPECS_SCRIPT = """
import json, sys
import keras
from learnae.training import load_model, tensor_specs
keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])  # bump Keras' layer-name counters
out = {}
for spec in sys.argv[1:]:
    load_model(spec, seed=1)  # twice, so the second build gets suffixed names
    out[spec] = tensor_specs(load_model(spec, seed=1))
print(json.dumps(out))
"""


def test_tensor_specs_are_stable_across_processes(keras, user_module):
    specs = ["digits-mlp", "digits-cnn", "digits-cnn-large", "mnist1d-mlp", "mnist1d-cnn", "mymodels:build"]
    here = {s: json.loads(json.dumps(tensor_specs(load_model(s, seed=1)))) for s in specs}
    out = subprocess.run([sys.executable, "-c", _SPECS_SCRIPT, *specs], capture_output=True, text=True,
                         check=True, cwd=user_module, timeout=120)
    there = json.loads(out.stdout.strip().splitlines()[-1])
    assert there == here
    names = [n for n, _, _ in here["digits-cnn"]]
    assert names[0] == "000/conv1/kernel" and len(set(names)) == len(names)
    assert all(d == "float32" for _, _, d in here["digits-cnn-large"])


def test_check_model_spec_needs_no_tensorflow(tmp_path):
    script = (
        "import sys\n"
        "from learnae.training.models import check_model_spec, ModelSpecError\n"
        "print(check_model_spec('digits-cnn-large'), check_model_spec('pkg.mod:build'))\n"
        "for bad in ('digits-rnn', 'absent.keras', 'nofile.py:build', 'mod:'):\n"
        "    try:\n"
        "        check_model_spec(bad)\n"
        "    except ModelSpecError as e:\n"
        "        print('error', repr(bad) in str(e))\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=tmp_path, timeout=60).stdout.split("\n")
    assert out[:6] == ["preset function", "error True", "error True", "error True", "error True", "False False"]
