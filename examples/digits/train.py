"""Handwritten digits (scikit-learn's bundled 8x8 images) with a small neural network.

podium run examples/digits/train.py -a "--epochs 3 --lr 0.1"
podium run examples/digits/train.py -d digits-train -a "--epochs 20"   # the demo competition
podium automl examples/digits/search-random.yaml                        # a hyperparameter search
podium submit demo/1 -C digits                                          # its last checkpoint
python examples/digits/train.py --epochs 3      # the same, outside Podium
"""

import argparse
import pickle
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from cli import sdk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"digits: epochs={args.epochs} lr={args.lr} hidden={args.hidden}", flush=True)

    # The competition's training set when it is mounted (`-d digits-train`), else all
    # of scikit-learn's bundled digits.
    mounted = Path(sdk.DATASET_PATH) / "digits-train" / "train.csv"
    if mounted.is_file():
        table = np.loadtxt(mounted, delimiter=",", skiprows=1, usecols=range(1, 66))
        images, labels = table[:, :-1], table[:, -1].astype(int)
    else:
        images, labels = load_digits(return_X_y=True)
    x_train, x_valid, y_train, y_valid = train_test_split(
        images, labels, test_size=0.25, random_state=args.seed, stratify=labels
    )
    scaler = StandardScaler().fit(x_train)
    x_train, x_valid = scaler.transform(x_train), scaler.transform(x_valid)
    model = MLPClassifier(
        hidden_layer_sizes=(args.hidden,),
        solver="sgd",
        momentum=args.momentum,
        learning_rate_init=args.lr,
        batch_size=64,
        random_state=args.seed,
    )
    classes = np.unique(labels)

    def save(folder: str) -> None:
        with open(Path(folder) / "model.pkl", "wb") as out:
            pickle.dump({"model": model, "scaler": scaler}, out)

    def load(folder: str) -> None:
        nonlocal model, scaler
        with open(Path(folder) / "model.pkl", "rb") as source:
            state = pickle.load(source)
        model, scaler = state["model"], state["scaler"]
        # A fork may run on with other rates (population based training): the optimiser
        # is made again with this run's at the next step.
        model.set_params(learning_rate_init=args.lr, momentum=args.momentum)
        vars(model).pop("_optimizer", None)

    def infer(test_csv: str) -> dict[str, int]:
        """A competition's test inputs (id, then the 64 pixels) -> {id: digit}."""
        table = np.atleast_2d(np.genfromtxt(test_csv, delimiter=",", skip_header=1, dtype=str))
        ids, pixels = table[:, 0], table[:, 1:].astype(float)
        return dict(zip(ids, model.predict(scaler.transform(pixels)).tolist(), strict=True))

    sdk.bind(save=save, load=load, infer=infer)
    done = 0
    if sdk.RESUME:  # forked with --checkpoint: start from it, at the epoch it was saved
        sdk.load(sdk.RESUME)
        done = int(sdk.RESUME.rpartition("-")[2]) if sdk.RESUME[-1:].isdigit() else 0
        print(f"resumed from checkpoint {sdk.RESUME}", flush=True)
    print(f"training on {len(x_train)} images, validating on {len(x_valid)}", flush=True)
    for epoch in range(done + 1, args.epochs + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.partial_fit(x_train, y_train, classes=classes)
        train_loss = float(model.loss_)
        valid_acc = float((model.predict(x_valid) == y_valid).mean())
        sdk.report(step=epoch, **{"train/loss": train_loss, "valid/acc": valid_acc})
        sdk.save(epoch)
        print(f"epoch {epoch}: train/loss={train_loss:.4f} valid/acc={valid_acc:.4f}", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
