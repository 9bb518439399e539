"""A device app on the runtime alone (numpy + onnxruntime + edgelll; no torch, no onnx): load a
split export, classify a few samples, learn a new class from five shots, save the device state,
reload it and classify again.

The new class is one the export's head does not have. Export an early checkpoint of a class-
incremental run and the later classes are honest new classes (the head grows as the stream goes):

    edgelll learn --epochs 2 --out runs/digits
    edgelll export runs/digits --split --checkpoint exp002 --out runs/digits/early/model-extractor.onnx
    python examples/device_app.py runs/digits/early/model-extractor.onnx --state device-state.npz

Here the export knows digits 0-5 and the app teaches it the lowest digit it lacks. When the head
already has every label of the data, the new class is synthetic but visually distinct: inverted
images (max - x) under a new label. Samples come from the embedded digits (read with numpy) or
``--data FILE.npz`` (``x_train, y_train, x_test, y_test``, samples as stored).
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

import numpy as np

from edgelll.errors import EdgelllError
from edgelll.runtime import Model

DIGITS = Path(str(resources.files("edgelll") / "_data" / "digits.npz"))  # installed with edgelll
SHOTS = 5


def load_samples(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise EdgelllError(f"{path} does not exist; give --data FILE.npz with x_train, y_train, "
                           f"x_test, y_test")
    with np.load(path, allow_pickle=False) as npz:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(npz.files)
        if missing:
            raise EdgelllError(f"{path} lacks {', '.join(sorted(missing))}")
        return {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}


def new_class(model: Model, data: dict) -> tuple[int, np.ndarray, np.ndarray, str]:
    """A label the head lacks, its five shots (training split) and held-out samples (test)."""
    known = set(model.classes.tolist())
    absent = sorted(set(np.unique(data["y_train"]).tolist()) - known)
    if absent:
        label = absent[0]
        shots = data["x_train"][data["y_train"] == label][:SHOTS]
        return label, shots, data["x_test"][data["y_test"] == label], f"digit {label}"
    top = data["x_train"].max()
    label = max(known) + 1
    invert = lambda x: (top - x).astype(x.dtype)  # noqa: E731
    return label, invert(data["x_train"][:SHOTS]), invert(data["x_test"]), "inverted images"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("onnx", type=Path, help="a split export (model-extractor.onnx)")
    ap.add_argument("--state", type=Path, default=Path("device-state.npz"),
                    help="where the device state is saved (default: ./device-state.npz)")
    ap.add_argument("--data", type=Path, default=DIGITS, help="an .npz of samples as stored")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    try:
        run(args)
    except EdgelllError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def run(args) -> None:
    data = load_samples(args.data)
    model = Model.load(args.onnx, threads=args.threads)
    x, y = data["x_test"], data["y_test"].astype(np.int64)
    old = np.isin(y, model.classes)
    print(f"loaded {args.onnx} ({model.head.kind} head, classes {model.classes.tolist()})")
    print(f"first 8 test samples: predicted {model.predict(x[:8]).tolist()}, true {y[:8].tolist()}")
    print(f"accuracy on the {old.sum()} test samples of its classes: "
          f"{(model.predict(x[old]) == y[old]).mean():.1%}")
    label, shots, held_out, what = new_class(model, data)
    model.learn_class(shots, label, name=what)
    hit = (model.predict(held_out) == label).mean()
    print(f"learnt class {label} ({what}) from {len(shots)} shots: {hit:.1%} of its "
          f"{len(held_out)} held-out samples predicted as {label} (chance "
          f"{1 / len(model.classes):.1%}); old classes now {(model.predict(x[old]) == y[old]).mean():.1%}")
    model.save(args.state)
    back = Model.load(args.onnx, state=args.state, threads=args.threads)
    same = back.scores(x).tobytes() == model.scores(x).tobytes()
    print(f"saved {args.state} and reloaded it: classes {back.classes.tolist()}, scores "
          f"{'bitwise identical' if same else 'DIFFERENT'}; held-out {label}s predicted as {label}: "
          f"{(back.predict(held_out) == label).mean():.1%}")
    if not same:
        raise EdgelllError("the reloaded state does not reproduce the scores")


if __name__ == "__main__":
    main()
