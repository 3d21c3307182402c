"""The lessons' plots: galleries come back as small JPEGs, curves and confusion matrices show what they say."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from course_utils.viz import plot_confusion, plot_history, plot_spread, show_heatmaps, show_images  # noqa: E402


def test_show_images_grey_and_colour_with_titles():
    grey = np.zeros((3, 32, 32), np.uint8)
    colour = np.zeros((2, 32, 32, 3), np.uint8)
    for images, titles in [(grey, ["a", "b\nsecond line", "c"]), (colour, None)]:
        shown = show_images(images, titles, ncols=2)
        assert shown.data[:2] == b"\xff\xd8"  # a JPEG
    assert not plt.get_fignums()  # figures are closed, not left to pile up


def test_gallery_titles_are_not_clipped():
    import io

    from PIL import Image

    images = np.full((8, 64, 64), 255, np.uint8)  # white cells: only the titles are dark
    shown = show_images(images, ["is defective\nsaid functional 0.98"] * 8, ncols=8, size=1.6)
    pixels = np.asarray(Image.open(io.BytesIO(shown.data)).convert("L"))
    assert pixels[:2].min() > 200, "dark pixels on the top edge: a title is cut off"


def test_show_heatmaps_returns_an_image():
    shown = show_heatmaps(np.zeros((3, 32, 32), np.uint8), np.random.rand(3, 32, 32), ["a", "b", "c"])
    assert shown.data[:2] == b"\xff\xd8"


def test_plot_history_draws_loss_and_metric():
    history = [{"epoch": e, "train_loss": 1 / e, "balanced_accuracy": 0.5 + e / 10} for e in (1, 2, 3)]
    fig = plot_history(history)
    left, right = fig.axes
    assert list(left.lines[0].get_ydata()) == [1.0, 0.5, 1 / 3]
    assert list(right.lines[0].get_ydata()) == [0.6, 0.7, 0.8]
    assert "balanced accuracy" in right.get_ylabel()
    plt.close(fig)


def test_plot_confusion_counts():
    display = plot_confusion(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), ["ok", "bad"])
    assert display.confusion_matrix.tolist() == [[1, 1], [1, 2]]
    plt.close("all")


def test_plot_spread_mean_line_and_seed_dots():
    fig, ax = plt.subplots()
    plot_spread(ax, [1, 2], np.array([[0.1, 0.3], [0.5, 0.7]]), "x")
    assert list(ax.lines[0].get_ydata()) == [0.2, 0.6]
    assert len(ax.collections) == 2  # one scatter per seed
    plt.close(fig)
