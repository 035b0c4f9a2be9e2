"""Take ``docs/ui-compare.png``: the MLflow UI comparing two ``evaluate`` runs (headless
Chromium); or, with ``--models``, ``docs/ui-models.png``: MLflow 3's model view of an
experiment, its logged decoders side by side with the test figures ``evaluate`` linked to
each (and the dataset each was measured on).

    mlflow ui --port 5055 &                       # on the store that holds the runs
    python docs/ui_screenshot.py --runs <run id 1> <run id 2> --out docs/ui-compare.png
    python docs/ui_screenshot.py --models <experiment id> --out docs/ui-models.png

The comparison page opens, its parallel-coordinates plot gets the ``roi`` parameter and the
headline ``test/…`` metrics, and the page is saved as a PNG. Needs Debian's ``chromium`` and
``chromium-driver`` (``install.sh``) and ``selenium`` (the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import urllib.parse
from pathlib import Path

import mlflow

METRICS = ["test/wup_top1", "baseline/paper/wup_top1", "test/wup_specific",
           "baseline/paper/wup_specific", "test/top5_acc_inbank", "test/judge2afc_acc"]
FLAGS = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
         "--window-size=1400,1500"]


def _driver(size: str = "1400,1500"):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="sbd-chromium-")
    for flag in FLAGS[:-1] + [f"--window-size={size}", f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def models_view(url: str, experiment: str, out: str) -> None:
    """Screenshot the logged-models table of ``experiment`` (MLflow 3: *Model training*
    mode, the experiment's *Models* page), whose columns hold each model's metrics grouped
    by the dataset they were measured on."""
    from selenium.webdriver.common.by import By

    os.environ.setdefault("SE_OFFLINE", "true")
    driver = _driver("2300,760")
    try:
        driver.get(f"{url}/#/experiments/{experiment}/models")
        time.sleep(8)
        for mode in driver.find_elements(By.XPATH, "//*[normalize-space(text())='Model training']"):
            mode.click()
            break
        time.sleep(3)
        for button in driver.find_elements(By.XPATH, "//button[@aria-label='Close']"):
            button.click()  # the assistant's side panel
        driver.find_element(By.XPATH, "//*[normalize-space(text())='Models']").click()
        time.sleep(6)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(out)
    finally:
        driver.quit()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--runs", nargs=2, help="two run ids")
    what.add_argument("--models", help="an experiment id: its logged models' view")
    p.add_argument("--url", default="http://127.0.0.1:5055", help="the running mlflow ui")
    p.add_argument("--out", default="docs/ui-compare.png")
    args = p.parse_args()
    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium-manager download

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    if args.models:
        models_view(args.url, args.models, args.out)
        print(args.out)
        return
    mlflow.set_tracking_uri(args.url)
    experiments = sorted({mlflow.get_run(r).info.experiment_id for r in args.runs})
    query = urllib.parse.urlencode({"runs": json.dumps(args.runs),
                                    "experiments": json.dumps(experiments)})
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        for flag in FLAGS + [f"--user-data-dir={profile}"]:
            opts.add_argument(flag)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        try:
            driver.get(f"{args.url}/#/compare-runs?{query}")
            time.sleep(8)
            # close the assistant side panel, if any
            for button in driver.find_elements(
                    By.XPATH, "//*[contains(text(),'Assistant')]/ancestor::div[.//button][1]"
                              "//button[contains(@aria-label,'lose')]"):
                button.click()
            # the plot's pickers: clear what the UI chose, then type the wanted names
            driver.find_element(By.XPATH, "//button[normalize-space(.)='Clear All']").click()
            time.sleep(1)
            for label, names in (("Parameters:", ["roi"]), ("Metrics:", METRICS)):
                box = driver.find_element(
                    By.XPATH, f"//*[normalize-space(text())='{label}']/following::input[1]")
                for name in names:
                    box.send_keys(name)
                    time.sleep(0.5)
                    box.send_keys(Keys.ENTER)
                box.send_keys(Keys.ESCAPE)
            time.sleep(3)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(args.out)
        finally:
            driver.quit()
    print(args.out)


if __name__ == "__main__":
    main()
