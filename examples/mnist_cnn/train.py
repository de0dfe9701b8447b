"""A small convolutional network in PyTorch on handwritten digits, the way NSML's paper
reproduced MNIST: two convolutional layers and two fully connected ones. The digits are
scikit-learn's bundled 8x8 images (nothing is downloaded); requirements.txt names torch,
so under the Docker runtime the session runs in an environment built from it.

podium run examples/mnist_cnn/train.py -a "--epochs 10"
podium run examples/mnist_cnn/train.py -d digits-train -a "--epochs 15"   # the demo competition
podium submit demo/1 -C digits                                            # its last checkpoint
python examples/mnist_cnn/train.py --epochs 3      # the same, outside Podium
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from cli import sdk


class Net(nn.Module):
    def __init__(self, channels: int = 32, hidden: int = 128):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
        )
        self.classify = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * channels * 4 * 4, hidden),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


def as_images(pixels: np.ndarray) -> torch.Tensor:
    """64 grey levels of 0..16 per row -> a batch of 1x8x8 images in 0..1."""
    return torch.tensor(pixels, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(
        f"mnist_cnn: torch {torch.__version__} on {device}"
        + (
            f" ({torch.cuda.device_count()} GPU: {torch.cuda.get_device_name(0)})"
            if device.type == "cuda"
            else ""
        ),
        flush=True,
    )

    # The competition's training set when it is mounted (`-d digits-train`), else all
    # of scikit-learn's bundled digits.
    mounted = Path(sdk.DATASET_PATH) / "digits-train" / "train.csv"
    if mounted.is_file():
        table = np.loadtxt(mounted, delimiter=",", skiprows=1, usecols=range(1, 66))
        pixels, labels = table[:, :-1], table[:, -1].astype(int)
    else:
        pixels, labels = load_digits(return_X_y=True)
    x_train, x_valid, y_train, y_valid = train_test_split(
        pixels, labels, test_size=0.25, random_state=args.seed, stratify=labels
    )
    x_train, x_valid = as_images(x_train).to(device), as_images(x_valid).to(device)
    y_train = torch.tensor(y_train).to(device)
    y_valid = torch.tensor(y_valid).to(device)

    model = Net().to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_of = nn.CrossEntropyLoss()

    def save(folder: str) -> None:
        torch.save(model.state_dict(), Path(folder) / "model.pt")

    def load(folder: str) -> None:
        model.load_state_dict(torch.load(Path(folder) / "model.pt", map_location=device))

    def infer(test_csv: str) -> dict[str, int]:
        """A competition's test inputs (id, then the 64 pixels) -> {id: digit}."""
        table = np.atleast_2d(np.genfromtxt(test_csv, delimiter=",", skip_header=1, dtype=str))
        ids, test_pixels = table[:, 0], table[:, 1:].astype(float)
        model.eval()
        with torch.no_grad():
            predicted = model(as_images(test_pixels).to(device)).argmax(dim=1)
        return dict(zip(ids.tolist(), predicted.cpu().tolist(), strict=True))

    sdk.bind(save=save, load=load, infer=infer)
    if sdk.RESUME:  # forked with --checkpoint: start from it
        sdk.load(sdk.RESUME)
        print(f"resumed from checkpoint {sdk.RESUME}", flush=True)
    print(f"training on {len(x_train)} images, validating on {len(x_valid)}", flush=True)
    started = time.monotonic()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(x_train), device=device)
        total = 0.0
        for start in range(0, len(order), args.batch):
            batch = order[start : start + args.batch]
            optimiser.zero_grad()
            loss = loss_of(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimiser.step()
            total += float(loss) * len(batch)
        model.eval()
        with torch.no_grad():
            valid_acc = float((model(x_valid).argmax(dim=1) == y_valid).float().mean())
        train_loss = total / len(x_train)
        sdk.report(step=epoch, **{"train/loss": train_loss, "valid/acc": valid_acc})
        sdk.save(epoch)
        print(f"epoch {epoch}: train/loss={train_loss:.4f} valid/acc={valid_acc:.4f}", flush=True)
    print(f"done in {time.monotonic() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
