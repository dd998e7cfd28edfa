"""Render deploy/k8s kustomizations in pure Python (PyYAML), without the kustomize binary.

Only the subset of kustomize that deploy/k8s uses; any other key in a kustomization.yaml is an
error, so a manifest change that needs more fails loudly here instead of rendering differently:

- `resources`: YAML files (any number of documents) or directories holding a
  kustomization.yaml (rendered first, recursively);
- `patches`: `- path: file.yaml`, each document a strategic-merge patch of the object with the
  same `kind` and `metadata.name` (maps merge; the lists Kubernetes merges by key -- containers,
  env, volumes, ports, volumeMounts -- merge by that key; other lists are replaced; no
  `$patch` directives);
- `configMapGenerator`: `name` with `files` (key = file name) and/or `literals` (`KEY=VALUE`);
  the name gets kustomize's content-hash suffix and every reference from a pod spec
  (`volumes[].configMap`, `envFrom[].configMapRef`, `env[].valueFrom.configMapKeyRef`) follows;
- `images`: `name` + `newTag` (and optionally `newName`) on every container and initContainer.

`python -m tests.k8s_render deploy/k8s/overlays/prod` prints the rendered stream, like
`kustomize build` (kustomize also sorts the objects by kind; this keeps file order).
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

KNOWN_KEYS = {"resources", "patches", "configMapGenerator", "images"}
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}

Obj = dict[str, Any]


class RenderError(ValueError):
    pass


def render(directory: Path) -> list[Obj]:
    """The objects `kustomize build directory` would produce (for the supported subset)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text()) or {}
    unknown = set(kustomization) - KNOWN_KEYS
    if unknown:
        raise RenderError(f"{directory}: unsupported kustomization keys {sorted(unknown)}")
    objects: list[Obj] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        objects += render(path) if path.is_dir() else _load(path)
    renames = {}
    for generator in kustomization.get("configMapGenerator", []):
        config_map = _generate(directory, generator)
        renames[generator["name"]] = config_map["metadata"]["name"]
        objects.append(config_map)
    for patch in kustomization.get("patches", []):
        if set(patch) != {"path"}:
            raise RenderError(f"{directory}: only `- path:` patches are supported: {patch}")
        for document in _load(directory / patch["path"]):
            target = _find(objects, document["kind"], document["metadata"]["name"])
            objects[objects.index(target)] = strategic_merge(target, document)
    for image in kustomization.get("images", []):
        for container in _containers(objects):
            _set_image(container, image)
    for obj in objects:
        for pod in _pod_specs(obj):
            _rename_config_maps(pod, renames)
    return objects


def strategic_merge(base: Any, patch: Any, key: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for name, value in patch.items():
            merged[name] = strategic_merge(base[name], value, name) if name in base else value
        return merged
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_KEYS:
        field = MERGE_KEYS[key]
        merged_list = copy.deepcopy(base)
        for item in patch:
            index = next((i for i, old in enumerate(base) if old.get(field) == item[field]), None)
            if index is None:
                merged_list.append(item)
            else:
                merged_list[index] = strategic_merge(base[index], item)
        return merged_list
    return copy.deepcopy(patch)


def _load(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _find(objects: list[Obj], kind: str, name: str) -> Obj:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise RenderError(f"patch target {kind}/{name} not found")


def _generate(directory: Path, generator: Obj) -> Obj:
    unknown = set(generator) - {"name", "files", "literals"}
    if unknown:
        raise RenderError(f"unsupported configMapGenerator keys {sorted(unknown)}")
    data: dict[str, str] = {}
    for file in generator.get("files", []):
        data[Path(file).name] = (directory / file).read_text()
    for literal in generator.get("literals", []):
        name, _, value = literal.partition("=")
        data[name] = value
    name = generator["name"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-{config_map_hash(name, data)}"},
        "data": data,
    }


def config_map_hash(name: str, data: dict[str, str]) -> str:
    """kustomize's suffix (api/hasher): sha256 of the Go-JSON encoding, 10 characters, with the
    vowel-like characters replaced so the suffix never spells a word."""
    encoded = json.dumps(
        {"data": data, "kind": "ConfigMap", "name": name},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        encoded = encoded.replace(char, escape)
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _pod_specs(obj: Obj) -> Iterator[Obj]:
    spec = obj.get("spec", {})
    if obj["kind"] == "Pod":
        yield spec
    template = spec.get("template", {}).get("spec")
    if template is not None:
        yield template


def _containers(objects: list[Obj]) -> Iterator[Obj]:
    for obj in objects:
        for pod in _pod_specs(obj):
            yield from pod.get("containers", [])
            yield from pod.get("initContainers", [])


def _set_image(container: Obj, image: Obj) -> None:
    current = container["image"]
    name = current.split("@")[0].rsplit(":", 1)[0] if ":" in current else current
    if name != image["name"]:
        return
    container["image"] = f"{image.get('newName', name)}:{image['newTag']}"


def _rename_config_maps(pod: Obj, renames: dict[str, str]) -> None:
    refs = [volume["configMap"] for volume in pod.get("volumes", []) if "configMap" in volume]
    for container in [*pod.get("containers", []), *pod.get("initContainers", [])]:
        refs += [e["configMapRef"] for e in container.get("envFrom", []) if "configMapRef" in e]
        refs += [
            e["valueFrom"]["configMapKeyRef"]
            for e in container.get("env", [])
            if "configMapKeyRef" in e.get("valueFrom", {})
        ]
    for ref in refs:
        ref["name"] = renames.get(ref["name"], ref["name"])


if __name__ == "__main__":
    sys.stdout.write(yaml.safe_dump_all(render(Path(sys.argv[1])), sort_keys=False))
