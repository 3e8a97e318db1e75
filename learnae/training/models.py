"""Model specs: turn ``--model SPEC`` into an uncompiled Keras model.

A spec is one of:

* a built-in preset name (see :data:`PRESETS`): ``digits-mlp`` (~17k parameters),
  ``digits-cnn`` (~38k) and ``digits-cnn-large`` (~2.7M, ~11 MB per float32
  snapshot, for when snapshot transfer should matter) take 8x8x1 inputs (the
  ``digits`` dataset) and output 10 class probabilities (softmax);
  ``mnist1d-mlp`` (15,210) and ``mnist1d-cnn`` (5,210) are the MLP and CNN of the
  MNIST-1D paper, take 40x1 inputs (the ``mnist1d`` dataset) and output 10 logits,
  as the paper's models do.
* ``module:function`` or ``path/to/file.py:function``: a function of no arguments
  that returns a Keras model (uncompiled; learnae compiles it). The model's output
  is class probabilities (a final softmax) or logits; learnae tells them apart by
  the last layer's activation.
* a path to a ``.keras`` file saved with ``model.save(...)``; it is loaded with
  ``safe_mode=True`` (no lambda layers, no arbitrary code).

Presets and functions are built right after ``keras.utils.set_random_seed(seed)``,
so every peer that uses the same spec and seed starts from identical weights,
which is what makes averaging work from the first merge.

Example:
    >>> model = load_model("digits-cnn", seed=0)      # doctest: +SKIP
    >>> model.count_params()                          # doctest: +SKIP
    38282
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from learnae.errors import UserError

__all__ = ["PRESETS", "ModelSpecError", "check_model_spec", "load_model", "describe_presets"]

log = logging.getLogger(__name__)

DIGITS_INPUT = (8, 8, 1)
DIGITS_CLASSES = 10
MNIST1D_INPUT = (40, 1)
MNIST1D_CLASSES = 10


class ModelSpecError(UserError):
    """A ``--model`` spec names no preset, importable function or loadable file."""


def _digits_mlp():
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(DIGITS_INPUT),
            layers.Flatten(name="flatten"),
            layers.Dense(128, activation="relu", name="hidden1"),
            layers.Dense(64, activation="relu", name="hidden2"),
            layers.Dense(DIGITS_CLASSES, activation="softmax", name="output"),
        ],
        name="digits_mlp",
    )


def _digits_cnn():
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(DIGITS_INPUT),
            layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool"),
            layers.Flatten(name="flatten"),
            layers.Dense(64, activation="relu", name="hidden"),
            layers.Dense(DIGITS_CLASSES, activation="softmax", name="output"),
        ],
        name="digits_cnn",
    )


def _digits_cnn_large():
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(DIGITS_INPUT),
            layers.Conv2D(64, 3, padding="same", activation="relu", name="conv1"),
            layers.Conv2D(128, 3, padding="same", activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool"),
            layers.Flatten(name="flatten"),
            layers.Dense(1024, activation="relu", name="hidden1"),
            layers.Dropout(0.3, name="dropout"),
            layers.Dense(512, activation="relu", name="hidden2"),
            layers.Dense(DIGITS_CLASSES, activation="softmax", name="output"),
        ],
        name="digits_cnn_large",
    )


# -- MNIST-1D: the models of Greydanus & Kobak, "Scaling down deep learning with MNIST-1D" ----
#
# Layer for layer the reference code's MLPBase and ConvBase (notebooks/models.py of
# github.com/greydanus/mnist1d), with PyTorch's default initialisation (weights and
# biases uniform in +-1/sqrt(fan_in)) instead of Keras' Glorot and zero biases, so the
# training curves start where the paper's do. What differs: Keras flattens the CNN's
# features position-major where PyTorch flattens channel-major, a fixed permutation of
# the last layer's inputs that changes nothing learnable.


def _torch_init(fan_in: int) -> dict:
    """``kernel_initializer`` / ``bias_initializer`` matching PyTorch's Linear and Conv1d defaults."""
    import keras

    bound = 1.0 / fan_in ** 0.5
    return {
        # kaiming_uniform(a=sqrt(5)) is uniform in +-sqrt(6 / ((1 + 5) * fan_in)) = +-1/sqrt(fan_in)
        "kernel_initializer": keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        "bias_initializer": keras.initializers.RandomUniform(-bound, bound),
    }


def _mnist1d_mlp():
    import keras
    from keras import layers

    inputs = keras.Input(MNIST1D_INPUT)
    x = layers.Flatten(name="flatten")(inputs)
    h1 = layers.Dense(100, activation="relu", name="hidden1", **_torch_init(40))(x)
    h2 = layers.Dense(100, activation="relu", name="hidden2", **_torch_init(100))(h1)
    # MLPBase's second layer is residual: h = h + relu(linear2(h))
    h = layers.Add(name="residual")([h1, h2])
    outputs = layers.Dense(MNIST1D_CLASSES, name="output", **_torch_init(100))(h)  # logits
    return keras.Model(inputs, outputs, name="mnist1d_mlp")


def _mnist1d_cnn():
    import keras
    from keras import layers

    def conv(kernel: int, in_channels: int, name: str) -> list:
        # Conv1d(padding=1): Keras has only "valid"/"same", so pad explicitly, then "valid".
        return [layers.ZeroPadding1D(1, name=f"{name}_pad"),
                layers.Conv1D(25, kernel, strides=2, activation="relu", name=name,
                              **_torch_init(in_channels * kernel))]

    return keras.Sequential(
        [
            keras.Input(MNIST1D_INPUT),
            *conv(5, 1, "conv1"),  # 40 -> 19 positions
            *conv(3, 25, "conv2"),  # 19 -> 10
            *conv(3, 25, "conv3"),  # 10 -> 5
            layers.Flatten(name="flatten"),  # 5 x 25 = 125 features
            layers.Dense(MNIST1D_CLASSES, name="output", **_torch_init(125)),  # logits
        ],
        name="mnist1d_cnn",
    )


#: preset name -> (builder, one-line description)
PRESETS: dict[str, tuple[Callable, str]] = {
    "digits-mlp": (_digits_mlp, "MLP 64-128-64-10, ~17k params, 8x8x1 digits"),
    "digits-cnn": (_digits_cnn, "CNN conv16-conv32-pool-64-10, ~38k params, 8x8x1 digits"),
    "digits-cnn-large": (
        _digits_cnn_large,
        "CNN conv64-conv128-pool-1024-512-10, ~2.7M params (~11 MB snapshots), 8x8x1 digits",
    ),
    "mnist1d-mlp": (_mnist1d_mlp, "MNIST-1D paper's MLP 40-100-100(residual)-10, 15,210 params, 40x1 mnist1d"),
    "mnist1d-cnn": (_mnist1d_cnn, "MNIST-1D paper's CNN 3x conv25 (k5/3/3, stride 2)-10, 5,210 params, 40x1 mnist1d"),
}


def describe_presets() -> str:
    """One line per preset, for help texts and error messages."""
    return "\n".join(f"{name}: {desc}" for name, (_, desc) in PRESETS.items())


def check_model_spec(spec: str) -> str:
    """The cheap checks of a spec, without importing TensorFlow or the user's module.

    Lets a command reject a typo before paying seconds of imports.

    Returns:
        ``"preset"``, ``"file"`` (a ``.keras`` path that exists) or ``"function"``
        (``module:function`` or ``file.py:function``, well-formed).

    Raises:
        ModelSpecError: empty spec, unknown preset, missing ``.keras`` or ``.py`` file,
            malformed ``module:function``.

    Example:
        >>> check_model_spec("digits-cnn")
        'preset'
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(f"model spec {spec!r} is empty: use one of {', '.join(PRESETS)}, "
                             "module:function or a .keras file")
    spec = spec.strip()
    if spec in PRESETS:
        return "preset"
    if spec.endswith(".keras"):
        if not Path(spec).expanduser().is_file():
            raise ModelSpecError(f"model spec {spec!r}: no such .keras file; check the path")
        return "file"
    if ":" in spec:
        module_name, _, func_name = spec.rpartition(":")
        if not module_name or not func_name.isidentifier():
            raise ModelSpecError(f"model spec {spec!r} is not module:function: use e.g. mypkg.models:build")
        if module_name.endswith(".py") and not Path(module_name).expanduser().is_file():
            raise ModelSpecError(f"model spec {spec!r}: no such file {module_name!r}; check the path")
        return "function"
    raise ModelSpecError(
        f"model spec {spec!r} is not a preset, module:function or .keras file: "
        f"use one of {', '.join(PRESETS)}, e.g. --model digits-cnn"
    )


def load_model(spec: str, *, seed: int = 0):
    """Build or load the Keras model a spec names.

    Args:
        spec: a preset name, ``module:function``, ``file.py:function`` or a ``.keras`` path.
        seed: seeds Keras, numpy and Python before building, for identical initial
            weights on every peer (ignored for ``.keras`` files, which carry weights).

    Returns:
        An uncompiled ``keras.Model``.

    Raises:
        ModelSpecError: unknown preset, module or function not found, file missing or
            unreadable, or the result is not a Keras model. The message names the
            spec and the fix.

    Example:
        >>> model = load_model("digits-mlp", seed=1)     # doctest: +SKIP
    """
    kind = check_model_spec(spec)
    spec = spec.strip()
    if kind == "file":
        return _load_keras_file(spec)
    builder = PRESETS[spec][0] if kind == "preset" else _resolve_function(spec)
    import keras

    keras.utils.set_random_seed(seed)
    try:
        model = builder()
    except UserError:
        raise
    except Exception as exc:
        if kind == "preset":
            raise
        raise ModelSpecError(
            f"model spec {spec!r}: the function raised {type(exc).__name__}: {exc}; fix the function"
        ) from exc
    return _check_model(model, spec)


def _check_model(model, spec: str):
    import keras

    if not isinstance(model, keras.Model):
        raise ModelSpecError(
            f"model spec {spec!r} returned {type(model).__name__}, not a keras.Model: "
            "return e.g. keras.Sequential([...])"
        )
    return model


def _resolve_function(spec: str) -> Callable:
    module_name, _, func_name = spec.rpartition(":")
    if not module_name or not func_name.isidentifier():
        raise ModelSpecError(f"model spec {spec!r} is not module:function: use e.g. mypkg.models:build")
    try:
        if module_name.endswith(".py"):
            module = _import_file(Path(module_name), spec)
        else:
            module = _import_module(module_name, spec)
    except UserError:
        raise
    except Exception as exc:
        raise ModelSpecError(
            f"model spec {spec!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}; fix the module"
        ) from exc
    func = getattr(module, func_name, None)
    if func is None or not callable(func):
        raise ModelSpecError(
            f"model spec {spec!r}: {module_name!r} has no function {func_name!r}; check the name"
        )
    return func


def _import_module(name: str, spec: str):
    # A console script does not put the working directory on sys.path; a user
    # running `learnae peer start --model mymodels:build` from their project expects it.
    cwd = str(Path.cwd())
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise ModelSpecError(
                f"model spec {spec!r}: no module named {exc.name!r}; check the name and that it is "
                "importable from the working directory or PYTHONPATH"
            ) from None
        raise
    finally:
        if added:
            sys.path.remove(cwd)


def _import_file(path: Path, spec: str):
    path = path.expanduser()
    if not path.is_file():
        raise ModelSpecError(f"model spec {spec!r}: no such file {str(path)!r}; check the path")
    mod_spec = importlib.util.spec_from_file_location(f"learnae_user_model_{path.stem}", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def _load_keras_file(spec: str):
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelSpecError(f"model spec {spec!r}: no such .keras file; check the path")
    import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise ModelSpecError(
            f"model spec {spec!r}: cannot load the .keras file ({type(exc).__name__}: {exc}); "
            "save it with model.save('model.keras')"
        ) from exc
    return _check_model(model, spec)
