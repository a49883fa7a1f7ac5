"""The repaired wheel works without FFmpeg's development packages (issue #10; docs/packaging.md).

One module-scoped pipeline, timed step by step (the times are printed with ``-s`` and attached to the report as
user properties):

1. ``make wheel`` into a temporary directory: sdist, a wheel built from that sdist, ``auditwheel repair``
   (set ``OV2_WHEEL_FILE=dist/ov2-...whl`` to test an already repaired wheel instead of building one);
2. ``auditwheel show`` must list the vendored ``libav*`` / ``libsw*`` libraries under hashed names, the wheel must
   carry them in ``ov2.libs/`` and declare numpy and torch; the sdist must carry csrc/, cmake/ and CMakeLists.txt;
3. a fresh ``python -m venv``; ``pip install torch==2.13.0 <wheel>`` (torch from this machine's local CPU wheel,
   numpy resolved from the wheel's own metadata: no ``--no-deps``);
4. in that venv, from a directory outside the checkout, with ``LD_LIBRARY_PATH`` empty and ``PKG_CONFIG_PATH``,
   ``PYTHONPATH`` and ``OV2_CORE_DIR`` unset, and -- where ``unshare -m`` works (root in a container, as in CI) --
   inside a private mount namespace where the system's FFmpeg shared libraries, headers and pkg-config files are
   overmounted with /dev/null / an empty directory (checked: loading them there fails), tokenize a shared video
   and decode H.264 / HEVC / AV1 frames; ``build_info()`` and ``/proc/self/maps`` must show every FFmpeg library
   loaded from the wheel's ``ov2.libs/``, none from /usr/lib;
5. ``ldd`` of the installed ``_core`` resolves ``libav*`` to the vendored hashed names even with the system
   copies present.

Skip with ``OV2_SKIP_WHEEL_TEST=1`` (it takes a few minutes on 2 cores, most of it compiling and repairing).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from ov2_testing import SHARED_VIDEOS  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("OV2_SKIP_WHEEL_TEST", "") not in ("", "0"), reason="OV2_SKIP_WHEEL_TEST set"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="manylinux wheels are Linux only"),
]

FFMPEG_LIB_RE = re.compile(r"^lib(avcodec|avformat|avutil|swscale|swresample|avfilter|avdevice|postproc)[.-]")
VENDORED_RE = re.compile(r"^lib(avcodec|avformat|avutil|swscale|swresample)-[0-9a-f]{8}\.so[.0-9]*$")
# tokenized: the first present; decoded (a few frames each): all present (H.264, HEVC, AV1 through libdav1d)
SHARED_PICK = ["ytb_XwB-dkS5BVM.mp4", "tc_h264_10bits.mp4", "tc_h265_video.mp4", "tc_av1_video.mkv"]
TORCH_SPEC = os.environ.get("OV2_WHEEL_TEST_TORCH", "torch==2.13.0")

TIMINGS: dict[str, float] = {}


def _run(cmd, timeout=1800, **kw) -> subprocess.CompletedProcess:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if p.returncode != 0:
        raise AssertionError(f"{cmd!r} failed ({p.returncode}) after {time.perf_counter() - t0:.0f} s\n"
                             f"--- stdout ---\n{p.stdout[-6000:]}\n--- stderr ---\n{p.stderr[-6000:]}")
    return p


class _Timer:
    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        TIMINGS[self.name] = round(time.perf_counter() - self.t0, 1)
        print(f"[wheel test] {self.name}: {TIMINGS[self.name]} s")


def _auditwheel_show(wheel: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    with _Timer("auditwheel show"):
        return _run([str(REPO / ".venv" / "bin" / "python"), "-m", "auditwheel", "show", str(wheel)], env=env).stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """(the repaired wheel, the output of ``auditwheel show`` on it)."""
    given = os.environ.get("OV2_WHEEL_FILE")
    if given:
        return Path(given).resolve(), _auditwheel_show(Path(given).resolve())
    if shutil.which("make") is None:
        pytest.skip("make not found")
    out = tmp_path_factory.mktemp("ov2_wheel")
    with _Timer("make wheel (sdist + wheel from sdist + auditwheel repair + show)"):
        p = _run(["make", "-C", str(REPO), "wheel", f"WHEEL_DIST={out / 'dist'}", f"WHEEL_RAW={out / 'raw'}"],
                 timeout=3600)
    wheels = sorted((out / "dist").glob("ov2-*.whl"))
    assert len(wheels) == 1, wheels
    # make wheel ends with `auditwheel show` of the repaired wheel, after this marker
    marker = "== auditwheel show"
    show = p.stdout[p.stdout.rfind(marker):] if marker in p.stdout else _auditwheel_show(wheels[0])
    return wheels[0], show


@pytest.fixture(scope="module")
def wheel(built) -> Path:
    return built[0]


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ov2_wheel_venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OV2_CORE_DIR", "VIRTUAL_ENV")}
    base = getattr(sys, "_base_executable", None) or sys.executable
    with _Timer("fresh venv + pip install torch + wheel"):
        _run([base, "-m", "venv", str(root / "venv")], env=env)
        py = root / "venv" / "bin" / "python"
        _run([str(py), "-m", "pip", "install", "-q", TORCH_SPEC, str(wheel)], env=env, timeout=3600)
    return root / "venv"


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def _system_ffmpeg_files() -> tuple[list[str], list[str]]:
    """(files, directories) of the system FFmpeg: shared objects, static archives, pkg-config files, headers."""
    files, dirs = set(), set()
    for libdir in ("/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/local/lib",
                   "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                   "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu"):
        d = Path(libdir)
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if FFMPEG_LIB_RE.match(p.name) and (".so" in p.name or p.name.endswith(".a")):
                rp = os.path.realpath(p)
                if os.path.isfile(rp):
                    files.add(rp)
        pc = d / "pkgconfig"
        if pc.is_dir():
            for p in pc.glob("*.pc"):
                if FFMPEG_LIB_RE.match(p.name):
                    files.add(os.path.realpath(p))
    for inc in ("/usr/include", "/usr/include/x86_64-linux-gnu", "/usr/include/aarch64-linux-gnu",
                "/usr/local/include"):
        for name in ("libavcodec", "libavformat", "libavutil", "libswscale", "libswresample", "libavfilter",
                     "libavdevice", "libpostproc"):
            p = Path(inc) / name
            if p.is_dir():
                dirs.add(os.path.realpath(p))
    return sorted(files), sorted(dirs)


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _hide_ffmpeg_script(tmp: Path) -> Path | None:
    """A shell script that, run under ``unshare -m``, overmounts the system FFmpeg, checks that it is gone, then
    execs its arguments; None where mount namespaces are unavailable."""
    files, dirs = _system_ffmpeg_files()
    if not files or not _can_unshare():
        return None
    empty = tmp / "empty"
    empty.mkdir(exist_ok=True)
    sos = [f for f in files if ".so" in os.path.basename(f)]
    check = ("import ctypes, sys\n"
             "bad = []\n"
             f"for f in {sos!r}:\n"
             "    try:\n"
             "        ctypes.CDLL(f)\n"
             "        bad.append(f)\n"
             "    except OSError:\n"
             "        pass\n"
             "sys.exit('still loadable: ' + ' '.join(bad) if bad else 0)\n")
    (tmp / "hidden_check.py").write_text(check)
    lines = ["#!/bin/sh", "set -e"]
    lines += [f"mount --bind /dev/null '{f}'" for f in files]
    lines += [f"mount --bind '{empty}' '{d}'" for d in dirs]
    lines += [f"python3 '{tmp / 'hidden_check.py'}'",
              "if command -v pkg-config >/dev/null && pkg-config --exists libavcodec; then "
              "echo 'pkg-config still finds libavcodec' >&2; exit 97; fi",
              "echo OV2_FFMPEG_HIDDEN=1 >&2",
              'exec "$@"']
    script = tmp / "hide_ffmpeg.sh"
    script.write_text("\n".join(lines) + "\n")
    return script


def _videos(tmp: Path) -> list[str]:
    shared = [str(SHARED_VIDEOS / n) for n in SHARED_PICK if (SHARED_VIDEOS / n).is_file()]
    if shared:
        return shared
    # no shared videos: a small H.264 clip from the interpreter running the tests (needs PyAV there)
    path = tmp / "generated_h264.mp4"
    code = (
        "import sys, numpy as np, av\n"
        "c = av.open(sys.argv[1], 'w'); s = c.add_stream('libx264', rate=30); s.width, s.height = 320, 192\n"
        "s.pix_fmt = 'yuv420p'; rng = np.random.default_rng(0); bg = rng.integers(0, 255, (192, 352, 3), np.uint8)\n"
        "for i in range(48):\n"
        "    img = np.ascontiguousarray(bg[:, i % 32: i % 32 + 320])\n"
        "    for p in s.encode(av.VideoFrame.from_ndarray(img, format='rgb24')): c.mux(p)\n"
        "for p in s.encode(): c.mux(p)\n"
        "c.close()\n")
    p = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        pytest.skip(f"no shared videos at {SHARED_VIDEOS} and PyAV cannot generate one: {p.stderr[-300:]}")
    return [str(path)]


def _clean_env(venv: Path, home: Path) -> dict[str, str]:
    # what a user's shell would have, minus anything that could point the loader or Python at the build machine's
    # FFmpeg or the checkout: LD_LIBRARY_PATH empty, PKG_CONFIG_PATH / PYTHONPATH / OV2_CORE_DIR unset
    return {"PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            "LD_LIBRARY_PATH": "", "OMP_NUM_THREADS": "2", "TMPDIR": str(home)}


# -------------------------------------------------------------------------------------------------------------------


def test_wheel_metadata_sdist_and_vendored_libraries(built, record_property):
    wheel, show = built
    assert re.search(r"-manylinux_\d+_\d+_(x86_64|aarch64)\.whl$", wheel.name), wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    vendored = sorted(Path(n).name for n in names if n.startswith("ov2.libs/"))
    for lib in ("avcodec", "avformat", "avutil", "swscale"):
        assert any(re.match(rf"lib{lib}-[0-9a-f]{{8}}\.so", n) for n in vendored), (lib, vendored)
    assert any(n.startswith("ov2_tokenizer/_core.") for n in names)
    assert any(n.startswith("ov2_model/") for n in names)
    requires = re.findall(r"^Requires-Dist: (.*)$", meta, re.M)
    assert any(r.startswith("numpy") for r in requires) and any(r.startswith("torch") for r in requires), requires
    assert "Provides-Extra: model" in meta

    listed = sorted(set(re.findall(r"lib(?:av|sw)[a-z]+-[0-9a-f]{8}\.so[.0-9]*[0-9]", show)))
    print("[wheel test] auditwheel show lists:", listed)
    for lib in ("libavcodec", "libavformat", "libavutil", "libswscale"):
        assert any(x.startswith(lib + "-") for x in listed), (lib, show)
    tag = re.search(r'platform tag: "([^"]+)"', show)
    assert tag and tag.group(1).startswith("manylinux_"), show
    record_property("wheel", wheel.name)
    record_property("wheel_mb", round(wheel.stat().st_size / 2**20, 1))
    record_property("vendored_libraries", len(vendored))

    sdists = sorted(wheel.parent.glob("ov2-*.tar.gz"))
    if not sdists:
        pytest.skip("no sdist beside the given wheel")
    with tarfile.open(sdists[0]) as t:
        members = {m.split("/", 1)[1] for m in t.getnames() if "/" in m}
    for needed in ("CMakeLists.txt", "pyproject.toml", "cmake/Ov2FFmpeg.cmake", "csrc/bindings/module.cpp",
                   "csrc/bindings/build_info.cpp", "csrc/bindings/ov2_build_info.h.in", "src/ov2_tokenizer/__init__.py"):
        assert needed in members, needed
    assert not any(m.startswith(("benchmarks/.cache", ".venv", "build/")) for m in members)
    # (make wheel builds the wheel from this sdist, so the sdist is known to build)


def test_installed_wheel_runs_without_system_ffmpeg(wheel, venv, tmp_path, record_property):
    videos = _videos(tmp_path)
    site = _site_packages(venv)
    vendored_dir = (site / "ov2.libs").resolve()
    assert vendored_dir.is_dir(), list(site.iterdir())
    py = venv / "bin" / "python"
    cmd = [str(py), str(Path(__file__).with_name("_wheel_probe.py")), *videos]
    hide = _hide_ffmpeg_script(tmp_path)
    if hide is not None:
        cmd = ["unshare", "-m", "--propagation", "private", "sh", str(hide), *cmd]
    with _Timer("tokenize in the fresh venv" + (" (system FFmpeg hidden)" if hide else "")):
        p = _run(cmd, env=_clean_env(venv, tmp_path), cwd=str(tmp_path), timeout=900)
    if hide is not None:
        assert "OV2_FFMPEG_HIDDEN=1" in p.stderr, p.stderr
    record_property("system_ffmpeg_hidden", hide is not None)
    out = json.loads(p.stdout.strip().splitlines()[-1])

    # imported from the venv, not the checkout
    assert Path(out["ov2_file"]).resolve().is_relative_to(site.resolve()), out["ov2_file"]
    assert not any(str(REPO / "src") == s for s in out["sys_path"])
    assert out["env"]["LD_LIBRARY_PATH"] in ("", None) and out["env"]["PKG_CONFIG_PATH"] is None
    assert out["tokenized"]["tokens"] > 0 and out["tokenized"]["canvases"] > 0, out["tokenized"]
    assert all(d["frames"] > 0 for d in out["decoded"].values()), out["decoded"]

    bi = out["build_info"]
    ff = bi["ffmpeg"]
    assert bi["has_ffmpeg"] and ff["vendored"], ff
    assert Path(ff["vendored_dir"]).resolve() == vendored_dir
    for name, lib in ff["libraries"].items():
        assert Path(lib["path"]).resolve().parent == vendored_dir, (name, lib["path"])
        assert lib["abi_match"], (name, lib)
    assert bi["build"]["options"]["OV2_CUDA"] == "OFF" and not bi["has_cuda"]
    assert bi["build"]["build_type"] == "Release"
    assert bi["build"]["frontend"].startswith("scikit-build-core")
    assert ff["decoders"]["default"]["h264"] == "h264"

    ffmpeg_maps = [m for m in out["maps"] if FFMPEG_LIB_RE.match(os.path.basename(m))]
    assert ffmpeg_maps, out["maps"]
    for m in ffmpeg_maps:
        assert Path(m).resolve().parent == vendored_dir and VENDORED_RE.match(os.path.basename(m)), m
    assert not any(m.startswith(("/usr/lib", "/lib")) and FFMPEG_LIB_RE.match(os.path.basename(m))
                   for m in out["maps"])
    if "tc_av1_video.mkv" in out["decoded"] and ff["decoders"]["default"]["av1"] == "libdav1d":
        dav1d = [m for m in out["maps"] if os.path.basename(m).startswith("libdav1d")]
        assert dav1d and all(Path(m).resolve().parent == vendored_dir for m in dav1d), dav1d
    print("[wheel test] FFmpeg", ff["version_info"], ff["license"], "loaded from", vendored_dir)

    # the console script reports the same
    info = _run([str(venv / "bin" / "ov2"), "info"], env=_clean_env(venv, tmp_path), cwd=str(tmp_path)).stdout
    assert "vendored in the wheel" in info, info
    print(info)


def test_ldd_resolves_ffmpeg_to_vendored_copies(venv):
    if shutil.which("ldd") is None:
        pytest.skip("ldd not found")
    site = _site_packages(venv)
    core = next((site / "ov2_tokenizer").glob("_core*.so"))
    out = _run(["ldd", str(core)], env={"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": ""}).stdout
    print("".join(line + "\n" for line in out.splitlines() if re.match(r"\s*lib(av|sw)", line)))
    rows = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if m:
            rows[m.group(1)] = m.group(2)
    av = {k: v for k, v in rows.items() if re.match(r"lib(av|sw)", k)}
    assert {"avcodec", "avformat", "avutil", "swscale"} <= {re.match(r"lib([a-z]+)", k).group(1) for k in av}, av
    for k, v in av.items():
        assert VENDORED_RE.match(k), k  # the DT_NEEDED entries were renamed to the hashed copies
        assert Path(v).resolve().parent == (site / "ov2.libs").resolve(), (k, v)
    assert "not found" not in out


def test_timings_report(record_property):
    """Last in the module: the step times (also printed), for the CI budget."""
    for k, v in TIMINGS.items():
        record_property(k, v)
    print("[wheel test] timings:", json.dumps(TIMINGS))
