"""``ferzoo serve``'s web page in a real browser: Debian's headless Chromium driven by Selenium (the system's
/usr/bin/chromium and /usr/bin/chromedriver; nothing downloaded). Uploads the demo photo and reads the label the
page shows; the camera mode runs on Chromium's fake camera fed from a video file made of the demo photo.

About 10 s on two cores (a server and a browser start). Set FERZOO_SCREENSHOTS=DIR to keep the screenshots."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
pytest.importorskip("httpx")
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip("no browser: Debian's chromium and chromium-driver are not installed "
                "(apt-get install chromium chromium-driver); .ci/run installs them where apt-get exists",
                allow_module_level=True)

from serve_fixtures import running_server  # noqa: E402



def write_y4m(image: np.ndarray, path: Path, frames: int = 5, size: int = 320) -> Path:
    """A short Y4M video (4:2:0) of ``image`` centred on a grey ``size`` x ``size`` canvas."""
    from PIL import Image

    canvas = Image.new("RGB", (size, size), (128, 128, 128))
    face = Image.fromarray(image).resize((size * 3 // 4, size * 3 // 4))
    canvas.paste(face, ((size - face.width) // 2, (size - face.height) // 2))
    y, u, v = canvas.convert("YCbCr").split()
    half = (size // 2, size // 2)
    frame = b"FRAME\n" + y.tobytes() + u.resize(half).tobytes() + v.resize(half).tobytes()
    path.write_bytes(f"YUV4MPEG2 W{size} H{size} F10:1 Ip A1:1 C420jpeg\n".encode() + frame * frames)
    return path


@pytest.fixture(scope="module")
def server():
    with running_server() as (base, _):
        yield base


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    import ferzoo
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never download a browser or a driver
    video = write_y4m(ferzoo.demo_image(), tmp_path_factory.mktemp("camera") / "face.y4m")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1100,900", "--use-fake-device-for-media-stream",
                 "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={video}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot(driver, tmp_path, name: str) -> Path:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    keep = os.environ.get("FERZOO_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / name)
    return path


def _wait_for(driver, predicate, timeout: float = 60.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(predicate)


def test_page_uploads_the_demo_photo_and_shows_the_label(server, browser, tmp_path):
    import ferzoo
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    _wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
    picker = browser.find_element(By.ID, "files")
    browser.execute_script("arguments[0].hidden = false", picker)
    picker.send_keys(str(ferzoo.demo_image(path_only=True)))
    label = _wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".card .face-label"))[0]
    assert label.text.startswith("face 0: happy"), label.text
    bars = browser.find_elements(By.CSS_SELECTOR, ".card .bar")
    assert len(bars) == 7 and bars[0].text.startswith("happy")
    # the box and label were drawn on the picture: its canvas is no longer only the photo's pixels
    drawn = browser.execute_script(
        "const c = document.querySelector('.card canvas'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
        "for (let i = 0; i < d.length; i += 4) if (d[i] === 255 && d[i + 1] === 64 && d[i + 2] === 64) n++; return n;")
    assert drawn > 50  # pixels of the first face's colour (#ff4040)
    assert "1 photo(s) classified" in browser.find_element(By.ID, "status").text
    _screenshot(browser, tmp_path, "serve_page_upload.png")


def test_page_explanation_map(server, browser, tmp_path):
    import ferzoo
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(server + "/")
    _wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#explain option")) > 1)
    Select(browser.find_element(By.ID, "explain")).select_by_value("saliency")
    picker = browser.find_element(By.ID, "files")
    browser.execute_script("arguments[0].hidden = false", picker)
    picker.send_keys(str(ferzoo.demo_image(path_only=True)))
    image = _wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".card img.explanation"))[0]
    _wait_for(browser, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth",
                                                  image))
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    _screenshot(browser, tmp_path, "serve_page_explain.png")


def test_page_camera_mode_labels_the_live_video(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    _wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
    browser.find_element(By.ID, "camera").click()
    label = browser.find_element(By.ID, "live-label")
    _wait_for(browser, lambda d: label.text.startswith("happy"))
    assert browser.find_element(By.ID, "live").is_displayed()
    drawn = browser.execute_script(
        "const c = document.getElementById('overlay'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
        "for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;")
    assert drawn > 50  # the box and label over the video
    _screenshot(browser, tmp_path, "serve_page_camera.png")
    browser.find_element(By.ID, "stop").click()
    assert not browser.find_element(By.ID, "live").is_displayed()
