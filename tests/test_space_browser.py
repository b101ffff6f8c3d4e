"""The Space written by `hf-rrg space`, served on 127.0.0.1 exactly as a Space runs it (``python app.py`` in the
folder, in a process where hf_rrg cannot be imported), driven by a real headless Chromium: a PNG, then a
two-view study with a DICOM, give the pipeline's reports; a bad file and a CT DICOM give a message on the page."""

from __future__ import annotations

import importlib.util
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
import torch
from test_hub_fixtures import BLOCK_HF_RRG, build_model_and_processor, misc_images, real_reports

from hf_rrg.hub import export_model, report_pipeline
from hf_rrg.hub.space import write_space

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
)  # fmt: skip
APT_PACKAGES = ("chromium", "chromium-driver")
SCREENSHOT_ENV = "HF_RRG_SPACE_SCREENSHOT"  # also save the screenshot there (how docs/images/space_demo.png was made)
SCREENSHOT_COLOURS = 128  # the copy is a palette PNG: small enough to commit
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
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=900, check=False)
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


class SpaceServer:
    """The Space's own app.py, started in the background; `url()` waits until the page answers."""

    def __init__(self, space: Path) -> None:
        port = free_port()
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
                   HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", HF_MODULES_CACHE=str(space.parent / "modules"))  # fmt: skip
        code = BLOCK_HF_RRG + "import runpy\nrunpy.run_path('app.py', run_name='__main__')\n"
        self.log_path = space.parent / "app.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen([sys.executable, "-c", code], cwd=space, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT)  # fmt: skip
        self.address = f"http://127.0.0.1:{port}/"
        self.ready = False

    def url(self) -> str:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self.ready:
            if self.process.poll() is not None:
                raise AssertionError(f"the Space app exited:\n{self.log_path.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(self.address, timeout=5) as response:
                    self.ready = response.status == 200
            except OSError:
                pass
            if not self.ready and time.monotonic() > deadline:
                raise AssertionError(f"the Space app did not answer in {STARTUP_SECONDS} s")
            time.sleep(0 if self.ready else 0.5)
        return self.address

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture(scope="module")
def space_server(exported: Path, tmp_path_factory):
    """The Space folder served by its own app.py on a free port of 127.0.0.1, hf_rrg blocked (starting while the
    browser and the reference reports are prepared)."""
    if importlib.util.find_spec("gradio") is None:
        pytest.skip("gradio (the demo extra) is not installed: pip install '.[dev]'")
    server = SpaceServer(write_space(exported, tmp_path_factory.mktemp("space") / "space"))
    try:
        yield server
    finally:
        server.stop()


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

    def submit(self, settings: str = "") -> tuple[str, str]:
        """(report, error message) once either appears (and the page says it used `settings`: a report that
        replaces an earlier one on the same page may be the same text)."""
        self.find("#rrg-submit").click()
        self.wait.until(lambda d: (self.report() and settings in self.find("#rrg-about").text) or self.error())
        return self.report(), self.error()

    def report(self) -> str:
        return self.find("#rrg-report textarea").get_attribute("value") or ""

    def error(self) -> str:
        return self.find("#rrg-error").text.strip()

    def open_settings(self) -> None:
        """Open the "Generation settings" accordion (once)."""
        if not self.driver.find_elements(self.by.CSS_SELECTOR, "#rrg-beams input[type=number]"):
            self.driver.find_element(self.by.XPATH, "//*[normalize-space(text())='Generation settings']").click()
        self.wait.until(lambda d: d.find_elements(self.by.CSS_SELECTOR, "#rrg-beams input[type=number]"))

    def setting(self, name: str) -> int:
        return int(self.find(f"#rrg-{name} input[type=number]").get_attribute("value"))

    def set_setting(self, name: str, value: int) -> None:
        from selenium.webdriver.common.keys import Keys

        box = self.find(f"#rrg-{name} input[type=number]")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(str(value), Keys.TAB)
        self.wait.until(lambda d: self.setting(name) == value)

    def gallery_images(self) -> int:
        return len(self.driver.find_elements(self.by.CSS_SELECTOR, "#rrg-gallery img"))


def save_small_copy(screenshot: Path, target: str) -> None:
    """A palette-PNG copy of the screenshot (what README.md shows)."""
    from PIL import Image

    with Image.open(screenshot) as image:
        image.convert("RGB").quantize(SCREENSHOT_COLOURS).save(target, optimize=True)


def test_space_page_reports_like_the_pipeline_and_shows_errors(space_server, browser, exported, shared_data, tmp_path):
    png, _, _, dicom, _ = misc_images(shared_data)
    pipe = report_pipeline(exported, device="cpu")
    beams = pipe.model.generation_config.num_beams
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the references are computed while the Space app starts on the other core(s)
    try:
        single, single_greedy = (pipe(str(png), num_beams=n)[0]["generated_text"] for n in (beams, 1))
        study = pipe((str(png), str(dicom)))[0]["generated_text"]
    finally:
        torch.set_num_threads(threads)
    assert beams > 1

    page = Page(browser, space_server.url())
    page.upload_view(1, png)
    assert page.submit() == (single, "")
    page.open_settings()
    assert page.setting("beams") == beams  # the page starts at the model's generation settings
    page.set_setting("beams", 1)
    assert page.submit(settings="1 view, 1 beam,") == (single_greedy, "")

    page = Page(browser, space_server.url())  # a fresh page: a two-view study, the lateral view a DICOM
    page.upload_view(1, png)
    page.upload_files(dicom)
    assert page.submit() == (study, "")
    page.wait.until(lambda d: page.gallery_images() >= 2)  # one overlay per view and sentence
    assert "cross-attention" in page.find("#rrg-about").text
    page.open_settings()
    screenshot = tmp_path / "space_demo.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    if os.environ.get(SCREENSHOT_ENV):
        save_small_copy(screenshot, os.environ[SCREENSHOT_ENV])

    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"this is not a DICOM file" * 20)
    page = Page(browser, space_server.url())
    page.upload_files(broken)
    report, error = page.submit()
    assert report == "" and error.startswith("Error:") and "Traceback" not in error
    assert "DICOM file broken.dcm has no pixel data" in error  # named as uploaded, not by its server-side path

    import pydicom

    ct = tmp_path / "ct_slice.dcm"
    dataset = pydicom.dcmread(dicom)
    dataset.Modality = "CT"
    dataset.save_as(ct)
    page = Page(browser, space_server.url())
    page.upload_files(ct)
    report, error = page.submit()
    assert report == ""
    assert "ct_slice.dcm is a DICOM of modality CT" in error and "Traceback" not in error
