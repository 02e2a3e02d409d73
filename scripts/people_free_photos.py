"""Assemble a held-out set of real photographs that contain no people.

The set measures how often the default model reports a person where there is
none, on photographs it never trained on (its training backgrounds come from
scikit-image, so none of those are used here). Every photo listed below was
checked by eye, including zoomed crops of distant scenery, and shows no person,
human figure, statue, mannequin, drawing of a person, face or body part.

Sources: wallpaper photos from Debian bookworm packages (fetched with
`apt-get download`, unpacked with `dpkg -x`) and the two sample photos bundled
with scikit-learn. Each is resized so its longer side is at most 1024 px and
saved as JPEG (quality 95); OUT_DIR/SOURCES.md records origin and licence.
Files already in OUT_DIR are skipped, so an interrupted run can be resumed.

Usage (needs apt-get and dpkg with bookworm sources, numpy, opencv-python, and
scikit-learn installed in this environment for its two images):

    python scripts/people_free_photos.py -o /work/people_free
"""

import argparse
import glob
import importlib.util
import os
import subprocess
import sys
import tempfile

import cv2

MAX_SIDE = 1024

LOMIRI = "usr/share/backgrounds"
MATE = "usr/share/backgrounds/mate/nature"
PLASMA = "usr/share/wallpapers"

# (output name, Debian package or "sklearn", path inside it, description, licence)
PHOTOS = [
    ("sklearn-china.jpg", "sklearn", "china.jpg",
     "pagoda of the Summer Palace above a lake with distant boats", "CC-BY-2.0"),
    ("sklearn-flower.jpg", "sklearn", "flower.jpg",
     "orange dahlia, close-up", "CC-BY-2.0"),
    ("lomiri-Bridge.jpg", "lomiri-wallpapers-16.04", f"{LOMIRI}/Bridge_by_Sander_Klootwijk.jpg",
     "bridge stay cables over a tidal estuary", "CC-BY-SA-4.0"),
    ("lomiri-Dragonfly.jpg", "lomiri-wallpapers-16.04", f"{LOMIRI}/Dragonfly_by_Bolly.jpg",
     "dragonfly on a hazel twig", "CC-BY-SA-4.0"),
    ("lomiri-Picture_0B.jpg", "lomiri-wallpapers-16.04", f"{LOMIRI}/Picture_0B_by_freespace.jpg",
     "halved fig in an orange bowl on concrete", "CC-BY-4.0"),
    ("lomiri-Picture_1A.jpg", "lomiri-wallpapers-16.04", f"{LOMIRI}/Picture_1A_by_freespace.jpg",
     "paint brushes, close-up", "CC-BY-4.0"),
    ("lomiri-Wine.jpg", "lomiri-wallpapers-16.04", f"{LOMIRI}/Wine_by_Jakkub_Mede.jpg",
     "room with wine bottle, coffee grinder, speaker and djembe on a beanbag", "CC-BY-4.0"),
    ("lomiri-aitzgorri.jpg", "lomiri-wallpapers-16.04", f"{LOMIRI}/aitzgorri_by_Aitzol_Berasategi.jpg",
     "autumn larch forest below limestone mountains", "CC-BY-4.0"),
    ("lomiri-free.jpg", "lomiri-wallpapers-16.04", f"{LOMIRI}/free_by_Peter_Nerlich.jpg",
     "wooden bird ornament hanging under a ceiling lamp", "CC-BY-SA-4.0"),
    ("lomiri-friends.jpg", "lomiri-wallpapers-16.04", f"{LOMIRI}/friends_by_Aitzol_Berasategi.jpg",
     "two spaniels looking out of a wooden cabin", "CC-BY-4.0"),
    ("lomiri-greentock.jpg", "lomiri-wallpapers-16.04", f"{LOMIRI}/greentock_by_Peter_Nerlich.jpg",
     "wall clock seen at a steep angle", "CC-BY-SA-4.0"),
    ("lomiri-life.jpg", "lomiri-wallpapers-16.04", f"{LOMIRI}/life_by_Aitzol_Berasategi.jpg",
     "forest stream over limestone rocks", "CC-BY-4.0"),
    ("lomiri-seeding.jpg", "lomiri-wallpapers-16.04", f"{LOMIRI}/seeding_by_Clements_Engelhardt.jpg",
     "dandelion clocks against a low sun", "CC0-1.0"),
    ("lomiri-sunset.jpg", "lomiri-wallpapers-16.04", f"{LOMIRI}/sunset_by_Aitzol_Berasategi.jpg",
     "stone orientation table on a summit at sunset", "CC-BY-4.0"),
    ("mate-Aqua.jpg", "mate-backgrounds", f"{MATE}/Aqua.jpg", "water drop splash", "GPL-2+"),
    ("mate-Blinds.jpg", "mate-backgrounds", f"{MATE}/Blinds.jpg", "backlit green leaf, macro", "GPL-2+"),
    ("mate-Dune.jpg", "mate-backgrounds", f"{MATE}/Dune.jpg", "dune grass with the sea behind", "GPL-2+"),
    ("mate-FreshFlower.jpg", "mate-backgrounds", f"{MATE}/FreshFlower.jpg", "orange petals, macro", "GPL-2+"),
    ("mate-Garden.jpg", "mate-backgrounds", f"{MATE}/Garden.jpg", "red and yellow marigold", "GPL-2+"),
    ("mate-GreenMeadow.jpg", "mate-backgrounds", f"{MATE}/GreenMeadow.jpg", "young grass, close-up", "GPL-2+"),
    ("mate-LadyBird.jpg", "mate-backgrounds", f"{MATE}/LadyBird.jpg", "ladybird on a grass stem", "GPL-2+"),
    ("mate-RainDrops.jpg", "mate-backgrounds", f"{MATE}/RainDrops.jpg", "water drops on a leaf", "GPL-2+"),
    ("mate-Storm.jpg", "mate-backgrounds", f"{MATE}/Storm.jpg",
     "storm clouds over fields from a moving car, motion blur", "GPL-2+"),
    ("mate-TwoWings.jpg", "mate-backgrounds", f"{MATE}/TwoWings.jpg", "two dandelion seeds", "GPL-2+"),
    ("mate-Wood.jpg", "mate-backgrounds", f"{MATE}/Wood.jpg", "grained board surface, shallow focus", "GPL-2+"),
    ("mate-YellowFlower.jpg", "mate-backgrounds", f"{MATE}/YellowFlower.jpg", "yellow flower, macro", "GPL-2+"),
    ("plasma-BytheWater.jpg", "plasma-workspace-wallpapers", f"{PLASMA}/BytheWater/contents/images/2560x1600.jpg",
     "jetty boards by a lake, shallow focus", "GPL-2+"),
    ("plasma-ColdRipple.jpg", "plasma-workspace-wallpapers", f"{PLASMA}/ColdRipple/contents/images/2560x1600.jpg",
     "wooden pier in fog, black and white", "GPL-2+"),
    ("plasma-ColorfulCups.jpg", "plasma-workspace-wallpapers", f"{PLASMA}/ColorfulCups/contents/images/2560x1600.jpg",
     "rows of coloured cups from above", "GPL-2+"),
    ("plasma-DarkestHour.jpg", "plasma-workspace-wallpapers", f"{PLASMA}/DarkestHour/contents/images/2560x1600.jpg",
     "misty lake at dusk", "GPL-2+"),
    ("plasma-FallenLeaf.jpg", "plasma-workspace-wallpapers", f"{PLASMA}/FallenLeaf/contents/images/2560x1600.jpg",
     "fallen maple leaf in autumn grass", "GPL-2+"),
    ("plasma-Grey.jpg", "plasma-workspace-wallpapers", f"{PLASMA}/Grey/contents/images/2560x1600.jpg",
     "wavy metal building facade, black and white", "GPL-2+"),
    ("plasma-Kite.jpg", "plasma-workspace-wallpapers", f"{PLASMA}/Kite/contents/images/2560x1600.jpg",
     "kite in a blue sky", "GPL-2+"),
    ("plasma-OneStandsOut.jpg", "plasma-workspace-wallpapers", f"{PLASMA}/OneStandsOut/contents/images/2560x1600.jpg",
     "moss with one orange shoot, top view", "GPL-2+"),
    ("plasma-Path.jpg", "plasma-workspace-wallpapers", f"{PLASMA}/Path/contents/images/2560x1600.jpg",
     "path through a spruce forest", "GPL-2+"),
    ("plasma-summer_1am.jpg", "plasma-workspace-wallpapers", f"{PLASMA}/summer_1am/contents/images/2560x1600.jpg",
     "lake with reeds at dawn", "GPL-2+"),
]


def fail(message):
    sys.exit(f"people_free_photos: error: {message}")


def run(cmd, cwd):
    try:
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        fail(f"{cmd[0]} not found (a Debian-based system is needed)")
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        fail(f"{' '.join(cmd)} failed: {lines[-1] if lines else 'exit ' + str(result.returncode)}")


def unpack(package, workdir):
    """Download one Debian package into workdir and return where it was unpacked."""
    run(["apt-get", "download", package], workdir)
    debs = glob.glob(os.path.join(workdir, f"{package}_*.deb"))
    if not debs:
        fail(f"apt-get download {package} produced no .deb file")
    root = os.path.join(workdir, package)
    run(["dpkg", "-x", debs[0], root], workdir)
    return root


def sklearn_images():
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        fail("scikit-learn is not installed, its sample images are needed")
    return os.path.join(spec.submodule_search_locations[0], "datasets", "images")


def save_resized(src, dst):
    image = cv2.imread(src, cv2.IMREAD_COLOR)
    if image is None:
        fail(f"cannot read {src}")
    scale = MAX_SIDE / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    tmp = dst + ".part.jpg"
    if not cv2.imwrite(tmp, image, [cv2.IMWRITE_JPEG_QUALITY, 95]):
        fail(f"cannot write {dst}")
    os.replace(tmp, dst)


def write_sources(out_dir):
    lines = [
        "# People-free photographs",
        "",
        "Held-out real photographs for measuring false person detections of the default",
        "model. Made by `scripts/people_free_photos.py`; each is resized to at most",
        f"{MAX_SIDE} px on its longer side. Debian files come from bookworm packages; the",
        "licence is the one the package's /usr/share/doc/PKG/copyright gives for the file.",
        "",
        "Each image was checked by eye (including zoomed crops of distant scenery) and",
        "shows no people: no person, human figure, statue, mannequin, drawing of a",
        "person, face or body part.",
        "",
        "| file | package | original path | licence | content |",
        "|---|---|---|---|---|",
    ]
    for name, package, path, description, licence in PHOTOS:
        if package == "sklearn":
            package, path = "scikit-learn", f"sklearn/datasets/images/{path}"
        else:
            path = "/" + path
        lines.append(f"| {name} | {package} | {path} | {licence} | {description} |")
    with open(os.path.join(out_dir, "SOURCES.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out-dir", required=True, help="folder to fill")
    out_dir = parser.parse_args().out_dir
    os.makedirs(out_dir, exist_ok=True)

    todo = [p for p in PHOTOS if not os.path.exists(os.path.join(out_dir, p[0]))]
    with tempfile.TemporaryDirectory() as workdir:
        roots = {}
        for name, package, path, _, _ in todo:
            if package not in roots:
                roots[package] = sklearn_images() if package == "sklearn" else unpack(package, workdir)
            src = os.path.join(roots[package], path)
            if not os.path.isfile(src):
                fail(f"{path} not found in {package}")
            save_resized(src, os.path.join(out_dir, name))
            print(f"wrote {name}")
    write_sources(out_dir)
    print(f"{len(PHOTOS)} photos in {out_dir} ({len(PHOTOS) - len(todo)} were already there)")


if __name__ == "__main__":
    main()
