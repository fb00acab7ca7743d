"""Screenshot of the web page for the README: the bundled sample uploaded, previewed and converted with the
default model, in headless Chromium (Debian's chromium + chromium-driver, selenium from the test extra).

    .venv/bin/python scripts/app_screenshot.py docs/app.png
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from s3d.app import make_server, page_url
from s3d.config import PROJECT_ROOT, compose

SAMPLE = PROJECT_ROOT / "samples" / "big_buck_bunny_432_433s_720p.webm"


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as work:
        server = make_server(compose("app", ["port=0", f"workdir={work}"]))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,1000"):
            options.add_argument(arg)
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"))
        try:
            driver.get(page_url(server))
            wait = WebDriverWait(driver, 600)
            driver.find_element(By.ID, "file").send_keys(str(SAMPLE))
            wait.until(lambda d: d.find_element(By.ID, "preview").is_enabled())
            driver.find_element(By.ID, "preview").click()
            wait.until(lambda d: d.execute_script("const i = document.getElementById('preview_wiggle'); return i && i.complete && i.naturalWidth > 0"))
            driver.find_element(By.ID, "convert").click()
            wait.until(lambda d: d.find_elements(By.CLASS_NAME, "download"))
            driver.save_screenshot(str(out))
        finally:
            driver.quit()
            server.shutdown()
    print(out)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/app.png"))
