"""Reads `lgss segment`'s scene formats back with the tools their users read
them with, and checks each against lgss's JSON of the same movie.

    python tests/read_back_scenes.py FPS,RULE,DIR ...

For every `<stem>.json` in DIR (written at FPS with RULE, `global` or
`local`), each sibling `<stem>.csv|vtt|edl|otio` present is read by:

- `.csv`:  Python's csv module (after the `# lgss:` comment line);
- `.vtt`:  webvtt-py, strict;
- `.edl`:  OpenTimelineIO's CMX 3600 adapter (at the exact rate: OTIO
           takes 24000/1001, not 23.976 as typed), pycmx (not
           tolerant: every statement recognised) and a strict CMX 3600
           reading of the lines (below);
- `.otio`: OpenTimelineIO.

Scene count, first/last frames, start/end times and the stated rule must
equal the JSON's. Prints one JSON line: how many movies, scenes and files of
each format were checked. Any difference is an AssertionError naming the
file.
"""

import csv
import json
import re
import sys
import urllib.parse
from pathlib import Path

import opentimelineio as otio
import pycmx
import webvtt
from pycmx.parse_cmx_statements import parse_cmx3600_statements
from pycmx.statements import StmtUnrecognized, StmtCorruptRemark

# The JSON's times are milliseconds, rounded.
HALF_MS = 0.0005


def seconds(hms):
    """`HH:MM:SS.mmm` as seconds."""
    h, m, s = hms.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def timebase(fps):
    """An EDL's timecode base and the exact rate (1000/1001 rates exactly)."""
    for base in (24, 25, 30, 48, 50, 60):
        if abs(fps - base) < 1e-9:
            return base, float(base)
        ntsc = base * 1000 / 1001
        if base % 6 == 0 and abs(fps - ntsc) <= 0.0005:
            return base, ntsc
    raise AssertionError(f"fps {fps} has no EDL timebase")


def frames_of(tc, base):
    """Non-drop-frame `HH:MM:SS:FF` as a frame count, checked field by field."""
    m = re.fullmatch(r"(\d\d):(\d\d):(\d\d):(\d\d)", tc)
    assert m, f"timecode {tc!r}"
    hh, mm, ss, ff = map(int, m.groups())
    assert hh < 24 and mm < 60 and ss < 60 and ff < base, f"timecode {tc!r} at {base}"
    return ((hh * 60 + mm) * 60 + ss) * base + ff


def rust_float(x):
    """A float as Rust's `{}` writes it (whole numbers without `.0`)."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def rule_statement(seg):
    """What every format says of the rule, from the JSON's settings."""
    if seg["rule"] == "local":
        return f"lgss: rule local (threshold {rust_float(seg['threshold'])})"
    g = seg["global"]
    prior = g.get("length_prior")
    prior = (
        f"length_weight {rust_float(prior['weight'])} (scene-length prior of {prior['scenes_seen']} training scenes)"
        if prior
        else "no scene-length prior"
    )
    return (
        f"lgss: rule global (threshold {rust_float(g['threshold'])}, coherence {rust_float(g['coherence'])}, "
        f"{prior}, max_scene_shots {g['max_scene_shots']})"
    )


def plain(value):
    """OTIO's metadata containers as plain dicts and lists."""
    if hasattr(value, "items"):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return value
    return [plain(v) for v in value]


def check_csv(path, scenes, imdb_id, rule):
    with open(path, newline="") as f:
        comment = f.readline()
        assert comment == f"# {rule}\n", f"{path}: {comment!r}"
        rows = list(csv.DictReader(f))
    assert len(rows) == len(scenes), f"{path}: {len(rows)} rows, {len(scenes)} scenes"
    for row, s in zip(rows, scenes):
        assert row["imdb_id"] == imdb_id, path
        for key in ("scene", "first_shot", "last_shot", "first_frame", "last_frame"):
            want = s["index"] if key == "scene" else s[key]
            assert int(row[key]) == want, f"{path}: {key} {row[key]} vs {want}"
        assert (row["start"], row["end"]) == (s["start"], s["end"]), f"{path}: {row}"
        assert abs(float(row["confidence"]) - s["confidence"]) <= 5e-7, f"{path}: {row}"


def check_vtt(path, scenes, rule):
    vtt = webvtt.read(str(path), strict=True)
    assert vtt.header_comments == [rule], f"{path}: header comments {vtt.header_comments}"
    cues = list(vtt.captions)
    assert len(cues) == len(scenes), f"{path}: {len(cues)} cues, {len(scenes)} scenes"
    for cue, s in zip(cues, scenes):
        assert (cue.start, cue.end) == (s["start"], s["end"]), f"{path}: {cue}"
        assert cue.text == f"Scene {s['index'] + 1}", f"{path}: {cue.text!r}"
        assert cue.identifier == str(s["index"] + 1), f"{path}: cue {cue.identifier!r}"


EVENT = re.compile(
    r"(?P<num>\d{3})  (?P<reel>[A-Z0-9]{1,8}) {1,8}V     C        "
    r"(?P<src_in>\S{11}) (?P<src_out>\S{11}) (?P<rec_in>\S{11}) (?P<rec_out>\S{11})"
)


def check_edl_strict(path, scenes, title, base, rule, media=None):
    """CMX 3600 as a strict reader takes it: TITLE (≤ 70 characters) and
    FCM, then events numbered from 001 in fixed columns (reel in 8, channel
    in 4, transition in 4 and 3 before the four timecodes), each with its
    `*` comments, nothing before the first event, record times contiguous
    from zero and equal to the source times."""
    lines = Path(path).read_text(encoding="ascii").split("\n")
    assert lines[-1] == "", f"{path}: no final newline"
    lines = lines[:-1]
    assert lines[0] == f"TITLE: {title}" and len(title) <= 70, f"{path}: {lines[0]!r}"
    assert lines[1] == "FCM: NON-DROP FRAME", f"{path}: {lines[1]!r}"
    assert lines[2] == "", f"{path}: the header ends in one blank line"
    events, comments = [], []
    for n, line in enumerate(lines[3:], start=4):
        m = EVENT.fullmatch(line)
        if m:
            events.append(m)
            comments.append([])
        else:
            assert line.startswith("* ") and events, f"{path}:{n}: neither an event nor an event's comment: {line!r}"
            comments[-1].append(line[2:])
    assert len(events) == len(scenes), f"{path}: {len(events)} events, {len(scenes)} scenes"
    record = 0
    for k, (m, said, s) in enumerate(zip(events, comments, scenes)):
        assert int(m["num"]) == k + 1, f"{path}: event {m['num']} at {k + 1}"
        src = frames_of(m["src_in"], base), frames_of(m["src_out"], base)
        rec = frames_of(m["rec_in"], base), frames_of(m["rec_out"], base)
        assert src == rec == (s["first_frame"], s["last_frame"] + 1), f"{path}: event {k + 1}: {src} {rec} vs {s}"
        assert rec[0] == record, f"{path}: event {k + 1} records from {rec[0]}, the last ended at {record}"
        record = rec[1]
        assert said[0] == f"FROM CLIP NAME: {title} scene {k + 1}", f"{path}: {said}"
        # The video, on every event; the rule, a comment of the first only.
        source = [f"SOURCE FILE: {media}", f"FROM FILE: {media}"] if media else []
        assert said[1:] == source + ([rule] if k == 0 else []), f"{path}: event {k + 1}: {said}"


def check_edl_pycmx(path, scenes, title, base, rule, media=None):
    with open(path) as f:
        statements = parse_cmx3600_statements(f, tolerant=False)
    bad = [
        s for s in statements
        if isinstance(s, StmtCorruptRemark) or (isinstance(s, StmtUnrecognized) and s.content.strip())
    ]
    assert not bad, f"{path}: pycmx does not recognise {bad}"
    with open(path) as f:
        edl = pycmx.parse_cmx3600(f, tolerant=False)
    assert edl.title == title and edl.format == "3600", f"{path}: {edl.title!r} {edl.format!r}"
    events = list(edl.events)
    assert len(events) == len(scenes), f"{path}: pycmx reads {len(events)} events"
    for k, (e, s) in enumerate(zip(events, scenes)):
        (edit,) = e.edits
        assert edit.channels.video and edit.source == "AX", f"{path}: event {k + 1}"
        assert edit.clip_name == f"{title} scene {k + 1}", f"{path}: {edit.clip_name!r}"
        assert edit.source_file == media, f"{path}: event {k + 1} names source file {edit.source_file!r}"
        span = (s["first_frame"], s["last_frame"] + 1)
        assert (frames_of(edit.source_in, base), frames_of(edit.source_out, base)) == span, f"{path}: {k + 1}"
        assert (frames_of(edit.record_in, base), frames_of(edit.record_out, base)) == span, f"{path}: {k + 1}"
    remarks = [st.text for st in events[0].statements if type(st).__name__ == "StmtRemark"]
    from_file = [f"FROM FILE: {media}"] if media else []
    assert remarks == from_file + [rule], f"{path}: pycmx's remarks of event 1: {remarks}"


def check_edl_otio(path, scenes, title, exact, fps, rule, media=None):
    timeline = otio.adapters.read_from_file(str(path), rate=exact)
    assert timeline.name == title, f"{path}: {timeline.name!r}"
    clips = list(timeline.find_clips())
    assert len(clips) == len(scenes), f"{path}: OTIO reads {len(clips)} clips"
    for k, (c, s) in enumerate(zip(clips, scenes)):
        r = c.source_range
        assert r.start_time.rate == exact, f"{path}: rate {r.start_time.rate}"
        got = (r.start_time.value, r.end_time_exclusive().value)
        assert got == (s["first_frame"], s["last_frame"] + 1), f"{path}: clip {k + 1}: {got}"
        placed = c.range_in_parent()
        assert (placed.start_time.value, placed.end_time_exclusive().value) == got, f"{path}: record {k + 1}"
        assert c.name == f"{title} scene {k + 1}", f"{path}: {c.name!r}"
        if media:
            assert c.media_reference.target_url == media, f"{path}: clip {k + 1}: {c.media_reference}"
        # The JSON's times are at FPS as typed, rounded to the ms; OTIO's at
        # the exact rate: they differ by that rounding and by frames times
        # the difference of the two frame durations.
        for frame, hms in ((got[0], s["start"]), (got[1], s["end"])):
            bound = HALF_MS + frame * abs(1 / exact - 1 / fps) + 1e-9
            t = otio.opentime.RationalTime(frame, exact).to_seconds()
            assert abs(t - seconds(hms)) <= bound, f"{path}: frame {frame}: {t} s vs {hms}"
    # OTIO keeps the comments it does not read (SOURCE FILE) with the clip.
    source = [f"SOURCE FILE: {media}"] if media else []
    said = plain(clips[0].metadata["cmx_3600"]["comments"])
    assert said == source + [rule], f"{path}: OTIO's comments of clip 1: {said}"
    for c in clips[1:]:
        said = plain(c.metadata["cmx_3600"]["comments"]) if "cmx_3600" in c.metadata else []
        assert said == source, f"{path}: {c.name}: {said}"


def check_otio(path, seg):
    scenes, imdb_id, fps = seg["scenes"], seg["imdb_id"], seg["fps"]
    timeline = otio.adapters.read_from_file(str(path))
    said = plain(timeline.metadata["lgss"])
    assert timeline.name == imdb_id and said["rule"] == seg["rule"], path
    assert said["threshold"] == seg["threshold"] and said["global"] == seg.get("global"), f"{path}: {said}"
    clips = list(timeline.find_clips())
    assert len(clips) == len(scenes), f"{path}: {len(clips)} clips"
    for c, s in zip(clips, scenes):
        r = c.source_range
        assert r.start_time.rate == fps, f"{path}: rate {r.start_time.rate}"
        assert (r.start_time.value, r.end_time_exclusive().value) == (s["first_frame"], s["last_frame"] + 1), path
        assert abs(r.start_time.to_seconds() - seconds(s["start"])) <= HALF_MS + 1e-9, path
        assert abs(r.end_time_exclusive().to_seconds() - seconds(s["end"])) <= HALF_MS + 1e-9, path
        assert c.name == f"Scene {s['index'] + 1}", path
        if seg.get("media"):
            ref = c.media_reference
            want = "file://" + urllib.parse.quote(seg["media"], safe="/-._~")
            assert isinstance(ref, otio.schema.ExternalReference) and ref.target_url == want, f"{path}: {ref}"
            assert ref.available_range.end_time_exclusive().value == scenes[-1]["last_frame"] + 1, path


def check_movie(json_path, fps, rule, counts):
    seg = json.loads(Path(json_path).read_text())
    scenes, imdb_id = seg["scenes"], seg["imdb_id"]
    assert seg["rule"] == rule and seg["fps"] == fps, f"{json_path}: {seg['rule']} at {seg['fps']}"
    assert scenes and scenes[0]["first_frame"] == 0, json_path
    said = rule_statement(seg)
    for ext in ("csv", "vtt", "edl", "otio"):
        path = Path(json_path).with_suffix("." + ext)
        if not path.exists():
            continue
        if ext == "csv":
            check_csv(path, scenes, imdb_id, said)
        elif ext == "vtt":
            check_vtt(path, scenes, said)
        elif ext == "edl":
            base, exact = timebase(fps)
            media = seg.get("media")
            check_edl_strict(path, scenes, imdb_id, base, said, media)
            check_edl_pycmx(path, scenes, imdb_id, base, said, media)
            check_edl_otio(path, scenes, imdb_id, exact, fps, said, media)
        else:
            check_otio(path, seg)
        counts[ext] = counts.get(ext, 0) + 1
    counts["movies"] += 1
    counts["scenes"] += len(scenes)
    counts["max_scenes"] = max(counts["max_scenes"], len(scenes))
    counts["min_scenes"] = min(counts["min_scenes"], len(scenes))
    counts["max_end_frame"] = max(counts["max_end_frame"], scenes[-1]["last_frame"] + 1)


def main(specs):
    counts = {"movies": 0, "scenes": 0, "max_scenes": 0, "min_scenes": 1 << 30, "max_end_frame": 0}
    for spec in specs:
        fps, rule, folder = spec.split(",", 2)
        found = sorted(Path(folder).glob("*.json"))
        assert found, f"{folder}: no .json outputs"
        for json_path in found:
            check_movie(json_path, float(fps), rule, counts)
    print(json.dumps(counts))


if __name__ == "__main__":
    main(sys.argv[1:])
