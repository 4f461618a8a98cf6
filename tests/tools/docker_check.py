#!/usr/bin/env python3
"""Checks docker/ without a Docker engine (CI has none): the Dockerfile parses with BuildKit's own
parser (the `dockerfile` package wraps it), uses only known instructions, names its stages and
copies only from them, and pins its base images; the compose file's images are pinned, MinIO's
come from quay.io (MinIO left Docker Hub in September 2026). Prints one JSON line; exit 1 with
the reasons when something is wrong.

Usage: docker_check.py DOCKERFILE COMPOSE_CONFIG_JSON"""
import json
import sys

import dockerfile

KNOWN = {"from", "run", "cmd", "label", "expose", "env", "add", "copy", "entrypoint", "volume",
         "user", "workdir", "arg", "onbuild", "stopsignal", "healthcheck", "shell", "maintainer"}

path, compose_json = sys.argv[1], sys.argv[2]
problems, stages, images = [], [], []
for c in dockerfile.parse_file(path):
    cmd = c.cmd.lower()
    if cmd not in KNOWN:
        problems.append(f"{path}:{c.start_line}: unknown instruction {c.cmd.upper()}")
    if cmd == "from":
        image = c.value[0]
        images.append(image)
        if len(c.value) == 3 and c.value[1].lower() == "as":
            stages.append(c.value[2])
        elif image not in stages:
            problems.append(f"{path}:{c.start_line}: unnamed stage FROM {image}")
    if cmd == "copy":
        for f in c.flags:
            if f.startswith("--from=") and f[len("--from="):] not in stages:
                problems.append(f"{path}:{c.start_line}: COPY {f} names no earlier stage")
for image in images:
    if image not in stages and (":" not in image or image.endswith(":latest")):
        problems.append(f"{path}: base image {image} is not pinned to a tag")

services = json.load(open(compose_json))["services"]
for name, s in services.items():
    image = s.get("image", "")
    if not image or ":" not in image or image.endswith(":latest"):
        problems.append(f"compose service {name}: image {image!r} is not pinned to a tag")
    if "minio" in image and not image.startswith("quay.io/minio/"):
        problems.append(f"compose service {name}: {image} is not on quay.io (MinIO left Docker Hub)")
    if "build" in s and s["build"].get("dockerfile") != "docker/Dockerfile":
        problems.append(f"compose service {name}: builds {s['build']} instead of docker/Dockerfile")
print(json.dumps({"stages": stages, "images": images, "services": sorted(services), "problems": problems}))
sys.exit(1 if problems else 0)
