"""weights.load: one reference type for every way a model is named, verified, cached by sha256;
and the package's import graph has no cycle."""

import ast
import shutil
from pathlib import Path

import pytest
import torch

from cifar_demo import weights, zoo
from cifar_demo.common import CLASSES
from cifar_demo.recipe import TrainConfig
from cifar_demo.runs import Run

from .synthetic_data import save_random_weights

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fresh_cache():
    weights.clear_cache()
    yield
    weights.clear_cache()


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    folder = save_random_weights(tmp_path / "weights", ["simple_cnn"])
    monkeypatch.setenv("CIFAR_DEMO_WEIGHTS", str(folder))
    return folder


def test_references_parse_as_the_cli_names_them():
    assert weights.ModelRef.parse("airnet") == weights.ModelRef("shipped", "airnet")
    for text in ("mine.zip", "x/airnet.safetensors", "airnet.json", "some/dir/name"):
        assert weights.ModelRef.parse(text).kind == "file"
    with pytest.raises(ValueError):
        weights.ModelRef("url", "https://example.org/x")


def test_a_second_load_of_the_same_bytes_is_the_cached_object_under_any_name(shipped):
    first = weights.load("simple_cnn")
    assert weights.load(weights.ModelRef.shipped("simple_cnn")) is first
    # The same file named by its path: the same sha256, so the same object.
    assert weights.load(weights.ModelRef.file(shipped / "simple_cnn.safetensors")) is first
    assert not first.model.training and first.classes == CLASSES and first.architecture == "simple_cnn"
    assert first.sha256 == first.card.sha256


def test_new_bytes_under_the_same_name_are_loaded_again(shipped):
    first = weights.load("simple_cnn")
    save_random_weights(shipped, ["simple_cnn"], seed=1)
    again = weights.load("simple_cnn")
    assert again is not first and again.sha256 != first.sha256


def test_a_tampered_shipped_file_is_refused_before_any_tensor_is_read(shipped):
    path = shipped / "simple_cnn.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(weights.WeightsError, match="sha256 mismatch"):
        weights.load("simple_cnn")


def _run_with_best(runs: Path, run_id="r1") -> Run:
    run = Run.create(runs / run_id, TrainConfig(model="simple_cnn"))
    torch.manual_seed(0)
    run.save_best(zoo.create("simple_cnn").eval(), {"model": "simple_cnn", "run_id": run_id})
    return run


def test_a_run_is_loaded_verified_and_a_changed_best_file_is_refused(tmp_path):
    run = _run_with_best(tmp_path)
    assert run.best_digests() and len(run.best_digests()) == 1
    loaded = weights.load(weights.ModelRef.run("r1", tmp_path))
    assert loaded.card is None and loaded.architecture == "simple_cnn" and loaded.config["model"] == "simple_cnn"
    weights.clear_cache()
    # Other bytes in place of the best weights: same keys and shapes, but not what the run wrote.
    torch.manual_seed(1)
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in zoo.create("simple_cnn").state_dict().items()}, str(run.best_path))
    with pytest.raises(weights.WeightsError, match="not the digest the run recorded"):
        weights.load(weights.ModelRef.run("r1", tmp_path))


def test_a_run_of_an_older_release_without_a_digest_still_loads(tmp_path):
    run = _run_with_best(tmp_path)
    run.best_digest_path.unlink()
    assert run.best_digests() is None
    assert weights.load(weights.ModelRef.run(run.dir)).architecture == "simple_cnn"


def test_a_kill_between_the_two_writes_of_save_best_leaves_a_pair_that_verifies(tmp_path, monkeypatch):
    run = _run_with_best(tmp_path)
    old_bytes = run.best_path.read_bytes()
    from cifar_demo import runs as runs_mod

    def killed(tmp, path):  # the new digest is on record, the new weights never reach their name
        raise KeyboardInterrupt

    monkeypatch.setattr(runs_mod, "publish", killed)
    with pytest.raises(KeyboardInterrupt):
        run.save_best(zoo.create("simple_cnn").eval(), {"model": "simple_cnn", "run_id": "r1"})
    assert run.best_path.read_bytes() == old_bytes and len(run.best_digests()) == 2
    assert weights.load(weights.ModelRef.run(run.dir)).architecture == "simple_cnn"


def test_a_run_without_best_weights_says_so(tmp_path):
    Run.create(tmp_path / "r2", TrainConfig(model="simple_cnn"))
    with pytest.raises(FileNotFoundError, match="no best weights yet"):
        weights.load(weights.ModelRef.run("r2", tmp_path))


# ---------------------------------------------------------------------------- the import graph

def _imports(path: Path, module: str, is_pkg: bool) -> set[str]:
    """The cifar_demo modules a module imports when it is imported (not inside functions)."""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    out = set()
    for node in ast.parse(path.read_text()).body:
        stack = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue  # a class body runs at import too, but ours import nothing there
            if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
                continue
            if isinstance(n, ast.Import):
                out |= {a.name for a in n.names if a.name.startswith("cifar_demo")}
            elif isinstance(n, ast.ImportFrom):
                target = ".".join(base[:len(base) - n.level + 1] + [n.module] if n.module else
                                  base[:len(base) - n.level + 1]) if n.level else (n.module or "")
                if target.startswith("cifar_demo"):
                    out.add(target)
                    out |= {f"{target}.{a.name}" for a in n.names}
            else:
                stack.extend(ast.iter_child_nodes(n))
    return out


def test_the_package_has_no_import_cycle():
    root = REPO / "cifar_demo"
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_pkg else parts)
        modules[name] = (path, is_pkg)

    def ancestors(name):
        parts = name.split(".")
        return {".".join(parts[:i]) for i in range(2, len(parts))}

    graph = {}
    for name, (path, is_pkg) in modules.items():
        mine = ancestors(name) | ({name} if is_pkg else set())
        edges = set()
        for target in _imports(path, name, is_pkg):
            # Importing a.b.c runs a.b's __init__ first: an edge to each package on the way.
            for t in {target} | ancestors(target):
                if t in modules and t != name and t not in mine and t != "cifar_demo":
                    edges.add(t)
        graph[name] = edges

    state, path = {}, []

    def visit(n):
        state[n] = "open"
        path.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == "open":
                pytest.fail("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
            if m not in state:
                visit(m)
        path.pop()
        state[n] = "done"

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_byte_identical_copies_share_one_cached_model(tmp_path):
    # The key is the content, not the path.
    a = save_random_weights(tmp_path / "a", ["simple_cnn"])
    b = tmp_path / "b"
    shutil.copytree(a, b)
    la = weights.load(weights.ModelRef.file(a / "simple_cnn.safetensors"))
    lb = weights.load(weights.ModelRef.file(b / "simple_cnn.json"))
    assert la is lb
