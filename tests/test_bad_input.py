"""A battery of bad inputs across every command: each is exit code 2 and ONE line on stderr naming the
input, never a traceback, and nothing that existed before in the output folder is changed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

import classcontrast as cc
from tests.test_cli import run


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs good and bad, and an output folder with an earlier run's files in it."""
    root = tmp_path_factory.mktemp("battery")
    cc.sample_image("coffee").resize((80, 60)).save(root / "img.png")
    (root / "text.png").write_text("not an image")
    (root / "empty.png").write_bytes(b"")
    Image.new("RGB", (60_000, 1)).save(root / "thin.png")
    (root / "noimages").mkdir()
    (root / "noimages" / "readme.txt").write_text("x")
    (root / "classes" / "not a class").mkdir(parents=True)
    cc.sample_image("rocket").resize((80, 60)).save(root / "classes" / "not a class" / "r.png")
    (root / "flat").mkdir()
    cc.sample_image("chelsea").resize((80, 60)).save(root / "flat" / "cat.png")
    (root / "weights.txt").write_text("not weights")
    (root / "afile").write_text("a file where a folder is expected")
    prev = root / "prev"
    (prev / "maps").mkdir(parents=True)
    (prev / "audit.json").write_text('{"earlier": "run"}')
    (prev / "maps" / "batch_00000.npz").write_bytes(b"earlier maps")
    (prev / "why.png").write_bytes(b"earlier figure")
    (prev / "last.pth").write_bytes(b"an earlier training run")
    (root / "hf").mkdir()
    (root / "hf" / "config.json").write_text('{"model_type": "vit", "auto_map": {"AutoConfig": "x.Y"}}')
    (root / "train" / "train" / "a").mkdir(parents=True)
    (root / "train" / "test" / "a").mkdir(parents=True)
    for split in ("train", "test"):
        cc.sample_image("coffee").resize((40, 30)).save(root / "train" / split / "a" / "c.png")
    (root / "train" / "last.pth").write_bytes(b"corrupt checkpoint")
    return root


def _toml(place: Path, name: str, text: str) -> str:
    path = place / f"{name}.toml"
    path.write_text(text)
    return str(path)


def _experiment(extra: str, kind: str = "perturbation", name: str = "e") -> str:
    return f'[[experiment]]\nkind = "{kind}"\nname = "{name}"\n{extra}\n'


# (arguments with {p} for the folder above, what the message must say)
CASES: list[tuple[str, str]] = [
    # explain: inputs
    ("explain {p}/missing.png", "missing.png"),
    ("explain {p}/text.png", "text.png"),
    ("explain {p}/empty.png", "empty.png"),
    ("explain {p}/thin.png", "aspect ratio"),
    ("explain {p}/noimages", "no images"),
    # explain: outputs
    ("explain {p}/img.png --out {p}/img.png", "input"),
    ("explain {p}/img.png --out {p}/prev", "is a folder"),
    ("explain {p}/img.png --out {p}/prev/why.xyz", "unsupported file type"),
    ("explain {p}/img.png --out {p}/afile/why.png", "is a file, not a folder"),
    ("explain {p}/img.png --out {p}/" + "n" * 300 + ".png", "longer than 255"),
    ("explain {p}/img.png --out {p}/prev/why.png --save-maps {p}/prev/maps.txt", "--save-maps"),
    ("explain {p}/img.png --out {p}/prev/why.png --save-maps {p}/img.png", "--save-maps"),
    ("explain {p}/img.png --out {p}/prev/why.png --html {p}/prev", "--html"),
    # explain: options
    ("explain {p}/img.png --method nope", "nope"),
    ("explain {p}/img.png --contrast nope", "nope"),
    ("explain {p}/img.png --top-k 0", "--top-k"),
    ("explain {p}/img.png --top-k 5000", "--top-k"),
    ("explain {p}/img.png --target 5000", "5000"),
    ("explain {p}/img.png --target notaclass", "notaclass"),
    ("explain {p}/img.png --foil notaclass", "notaclass"),
    ("explain {p}/img.png --layer nope", "nope"),
    ("explain {p}/img.png --scale nope", "--scale"),
    ("explain {p}/img.png --batch-size 0", "--batch-size"),
    ("explain {p}/img.png --num-classes -4", "--num-classes"),
    ("explain {p}/img.png --method smoothgrad --sigma nan", "--sigma"),
    ("explain {p}/img.png --method smoothgrad --sigma -1", "--sigma"),
    ("explain {p}/img.png --method smoothgrad --samples 0", "--samples"),
    ("explain {p}/img.png --method integrated_gradients --steps 0", "--steps"),
    ("explain {p}/img.png --method integrated_gradients --baseline nope", "nope"),
    ("explain {p}/img.png --method gradcam --steps 4", "--steps"),
    ("explain {p}/img.png --method lrp --composite nope", "nope"),
    ("explain {p}/img.png --method attention_rollout --discard-ratio 1.5", "--discard-ratio"),
    ("explain {p}/img.png --device nonsense", "nonsense"),
    ("explain {p}/img.png --model nope", "nope"),
    ("explain {p}/img.png --weights {p}/missing.pth", "missing.pth"),
    ("explain {p}/img.png --weights {p}/weights.txt --model torchvision:resnet18", "weights.txt"),
    ("explain {p}/img.png --model hf:{p}/hf", "--trust-remote-code"),
    ("explain {p}/img.png --relu-nope", "--relu-nope"),
    # audit
    ("audit {p}/missing --out {p}/prev", "missing"),
    ("audit {p}/flat --out {p}/afile", "is a file"),
    ("audit {p}/flat --out {p}/prev --pairs 0", "--pairs"),
    ("audit {p}/flat --out {p}/prev --top-k 0", "--top-k"),
    ("audit {p}/flat --out {p}/prev --limit 0", "--limit"),
    ("audit {p}/flat --out {p}/prev --limit -5", "--limit"),
    ("audit {p}/flat --out {p}/prev --batch-size 0", "--batch-size"),
    ("audit {p}/flat --out {p}/prev --method nope", "nope"),
    ("audit {p}/flat --out {p}/prev --preprocess nope", "nope"),
    ("audit {p}/classes --out {p}/prev", "not a class"),
    # evaluate
    ("evaluate perturbation --data {p}/flat --out {p}/prev --epsilon abc", "--epsilon"),
    ("evaluate perturbation --data {p}/flat --out {p}/prev --epsilon -1", "--epsilon"),
    ("evaluate perturbation --data {p}/flat --out {p}/prev --epsilon nan", "--epsilon"),
    ("evaluate perturbation --data {p}/flat --out {p}/prev --steps 1.5", "--steps"),
    ("evaluate perturbation --data {p}/flat --out {p}/prev --steps 0", "--steps"),
    ("evaluate perturbation --data {p}/flat --out {p}/prev --steps 1000000", "--steps"),
    ("evaluate perturbation --data {p}/flat --out {p}/prev --contrast nope", "nope"),
    ("evaluate perturbation --data {p}/flat --out {p}/afile", "is a file"),
    ("evaluate masking --data {p}/flat --out {p}/prev --sigma nan", "--sigma"),
    ("evaluate masking --data {p}/flat --out {p}/prev --sigma 1 2 3", "--sigma"),
    ("evaluate masking --data {p}/flat --out {p}/prev --threshold 2", "--threshold"),
    ("evaluate masking --data {p}/flat --out {p}/prev --rule nope", "nope"),
    ("evaluate faithfulness --data {p}/flat --out {p}/prev --fractions 0", "fractions"),
    ("evaluate faithfulness --data {p}/flat --out {p}/prev --fractions 2", "fractions"),
    ("evaluate faithfulness --data {p}/flat --out {p}/prev --baseline nope", "nope"),
    ("evaluate faithfulness --data {p}/flat --out {p}/prev --score nope", "nope"),
    ("evaluate faithfulness --data {p}/flat --out {p}/prev --road-noise -1", "--road-noise"),
    ("evaluate norm-logit --data {p}/flat --out {p}/prev --batch-size 0", "--batch-size"),
    ("evaluate figures --data {p}/flat --out {p}/prev --images 0", "--images"),
    ("evaluate figures --data {p}/flat --out {p}/prev --threshold -1", "--threshold"),
    # train
    ("train --data {p}/missing --out {p}/new", "missing"),
    ("train --data {p}/train --out {p}/prev", "--resume"),
    ("train --data {p}/train --out {p}/train --resume --model torchvision:resnet18 --weights none", "last.pth"),
    ("train --data {p}/train --out {p}/new --epochs 0", "--epochs"),
    ("train --data {p}/train --out {p}/new --lr nan", "--lr"),
    ("train --data {p}/train --out {p}/new --batch-size 0", "--batch-size"),
    ("train --data {p}/train --out {p}/afile", "is a file"),
]

# reproduce configurations: (file content, what the message must say)
CONFIGS: list[tuple[str, str]] = [
    ("this is not toml = = =", "not valid TOML"),
    (_experiment('limit = "ten"'), "limit must be an integer"),
    (_experiment("limit = -5"), "limit must be an integer of at least 1"),
    (_experiment("batch_size = 0"), "batch_size"),
    (_experiment('seed = "abc"'), "seed"),
    (_experiment("steps = [1.5]"), "steps"),
    (_experiment("steps = [1000000000000000000000]"), "steps"),
    (_experiment('epsilons = "0.1"'), "epsilons"),
    (_experiment("fractions = []", "faithfulness"), "fractions"),
    (_experiment('methods = "gradcam"', "faithfulness"), "methods"),
    (_experiment('methods = ["nope"]', "faithfulness"), "nope"),
    (_experiment('contrasts = ["nope"]', "faithfulness"), "nope"),
    (_experiment('threshold = "high"', "masking"), "threshold"),
    (_experiment("threshold = nan", "masking"), "threshold"),
    (_experiment("sigma = [1, 2, 3]", "masking"), "sigma"),
    (_experiment('device = "cuda:7"'), "cuda"),
    (_experiment('device = "gpu please"'), "gpu please"),
    (_experiment('preprocess = "nope"'), "nope"),
    (_experiment("", name="../up"), "plain folder name"),
    (_experiment("", kind="nope"), "kind"),
    (_experiment("limit = 1") + _experiment("limit = 0", "norm_logit", "f"), "experiment 2"),
]


def _snapshot(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


def _assert_one_line(code: int, err: str, expected: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert expected in err, err


def test_the_battery_is_large() -> None:
    assert len(CASES) + len(CONFIGS) >= 60


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[f"{c[0].split(' {p}')[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_command_line(args: str, expected: str, place: Path, capsys: pytest.CaptureFixture[str],
                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a default output (why.png, results/) would land here
    before = _snapshot(place)
    argv = [a.replace("{p}", str(place)) for a in args.split(" ")]
    code = run(argv)
    _assert_one_line(code, capsys.readouterr().err, expected)
    after = _snapshot(place)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing that existed was changed
    assert not any(tmp_path.iterdir())  # and nothing was written where the command ran


@pytest.mark.parametrize(("text", "expected"), CONFIGS, ids=[f"config-{i}" for i in range(len(CONFIGS))])
def test_bad_reproduce_config(text: str, expected: str, place: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _toml(place, "bad", text)
    out = place / "prev"
    before = _snapshot(place)
    code = run(["reproduce", config, "--out", str(out)])
    _assert_one_line(code, capsys.readouterr().err, expected)
    after = _snapshot(place)
    assert {k: v for k, v in after.items() if k in before} == before
    assert not (out / "e").exists()  # validated before the first experiment ran
