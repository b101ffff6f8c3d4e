"""The Space written by `hf-rrg space`, served on 127.0.0.1 exactly as a Space runs it (``python app.py`` in the
folder, in a process where hf_rrg cannot be imported), driven by a real headless Chromium: a PNG, then a
two-view study with a DICOM, give the pipeline's reports; a bad file and a CT DICOM give a message on the page."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from test_hub_fixtures import BLOCK_HF_RRG, build_model_and_processor, misc_images, real_reports

from hf_rrg.hub import export_model, report_pipeline
from hf_rrg.hub.space import write_space

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
)  # fmt: skip
APT_PACKAGES = ("chromium", "chromium-driver")
SCREENSHOT_ENV = "HF_RRG_SPACE_SCREENSHOT"  # also save the screenshot there (how docs/images/space_demo.png was made)
STARTUP_SECONDS = 300
REPORT_SECONDS = 180


def chromium_paths() -> tuple[str, str]:
    """(chromium, chromedriver); installs Debian's packages when missing and possible, else skips saying why."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if all(found):
        return found  # type: ignore[return-value]
    reason = "chromium/chromedriver are not installed"
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        command = f"apt-get update -qq && apt-get install -y -qq {' '.join(APT_PACKAGES)}"
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=900)
        found = shutil.which("chromium"), shutil.which("chromedriver")
        if all(found):
            return found  # type: ignore[return-value]
        reason = f"`{command}` failed: {(done.stderr or done.stdout).strip()[-300:]}"
    else:
        reason += " and this user cannot apt-get install them (not root or no apt-get)"
    pytest.skip(f"Chromium cannot be installed here: {reason}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, shared_data: Path) -> Path:
    """A tiny R2Gen export (128 px views: a 4 x 4 attention grid per view)."""
    model, processor = build_model_and_processor("r2gen", real_reports(shared_data), seed=7)
    processor.image_processor.eval_size = (128, 128)
    base = tmp_path_factory.mktemp("space_model")
    model.save_pretrained(base / "model")
    processor.save_pretrained(base / "model")
    return export_model(base / "model", base / "export", model_name="r2gen-tiny")


@pytest.fixture(scope="module")
def space_url(exported: Path, tmp_path_factory):
    """The Space folder served by its own app.py on a free port of 127.0.0.1, hf_rrg blocked."""
    pytest.importorskip("gradio", reason="the demo extra is not installed: pip install '.[dev]'")
    space = write_space(exported, tmp_path_factory.mktemp("space") / "space")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", HF_MODULES_CACHE=str(space.parent / "modules"))  # fmt: skip
    code = BLOCK_HF_RRG + "import runpy\nrunpy.run_path('app.py', run_name='__main__')\n"
    log = open(space.parent / "app.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen([sys.executable, "-c", code], cwd=space, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if server.poll() is not None:
                raise AssertionError(f"the Space app exited:\n{(space.parent / 'app.log').read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the Space app did not answer in {STARTUP_SECONDS} s")
            time.sleep(1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install '.[dev]'")
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="hf-rrg-chromium-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """The demo page in the browser: upload views, submit, read the outcome."""

    def __init__(self, driver, url: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver, self.by = driver, By
        self.wait = WebDriverWait(driver, REPORT_SECONDS)
        driver.get(url)
        self.wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#rrg-view-1 input[type=file]"))

    def find(self, css: str):
        return self.driver.find_element(self.by.CSS_SELECTOR, css)

    def upload_view(self, number: int, path: Path) -> None:
        self.find(f"#rrg-view-{number} input[type=file]").send_keys(str(path))
        self.wait.until(lambda d: d.find_elements(self.by.CSS_SELECTOR, f"#rrg-view-{number} img"))

    def upload_files(self, *paths: Path) -> None:
        self.find("#rrg-files input[type=file]").send_keys("\n".join(str(path) for path in paths))
        self.wait.until(lambda d: all(path.stem in self.find("#rrg-files").text for path in paths))  # name, size

    def submit(self) -> tuple[str, str]:
        """(report, error message) once either appears."""
        self.find("#rrg-submit").click()
        self.wait.until(lambda d: self.report() or self.error())
        return self.report(), self.error()

    def report(self) -> str:
        return self.find("#rrg-report textarea").get_attribute("value") or ""

    def error(self) -> str:
        return self.find("#rrg-error").text.strip()

    def gallery_images(self) -> int:
        return len(self.driver.find_elements(self.by.CSS_SELECTOR, "#rrg-gallery img"))


def test_space_page_reports_like_the_pipeline_and_shows_errors(space_url, browser, exported, shared_data, tmp_path):
    png, _, _, dicom, _ = misc_images(shared_data)
    pipe = report_pipeline(exported, device="cpu")

    page = Page(browser, space_url)
    page.upload_view(1, png)
    report, error = page.submit()
    assert error == ""
    assert report == pipe(str(png))[0]["generated_text"]

    page = Page(browser, space_url)  # a fresh page: a two-view study, the lateral view a DICOM
    page.upload_view(1, png)
    page.upload_files(dicom)
    report, error = page.submit()
    assert error == ""
    assert report == pipe((str(png), str(dicom)))[0]["generated_text"]
    page.wait.until(lambda d: page.gallery_images() >= 2)  # one overlay per view and sentence
    assert "cross-attention" in page.find("#rrg-about").text
    screenshot = tmp_path / "space_demo.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(screenshot, os.environ[SCREENSHOT_ENV])

    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"this is not a DICOM file" * 20)
    page = Page(browser, space_url)
    page.upload_files(broken)
    report, error = page.submit()
    assert report == ""
    assert error.startswith("Error:") and "broken.dcm" in error and "Traceback" not in error

    import pydicom

    ct = tmp_path / "ct_slice.dcm"
    dataset = pydicom.dcmread(dicom)
    dataset.Modality = "CT"
    dataset.save_as(ct)
    page = Page(browser, space_url)
    page.upload_files(ct)
    report, error = page.submit()
    assert report == ""
    assert "ct_slice.dcm is a DICOM of modality CT" in error and "Traceback" not in error
