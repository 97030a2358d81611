"""Kubeconfig writing and merging into the user's kubeconfig, as kind does."""
from __future__ import annotations

import base64
import stat

import pytest
import yaml

from eventplane.auth import kubeconfig
from eventplane.auth.kubeconfig import KubeconfigError, default_path, merge_into, remove_from, write_kubeconfig

CA = b"-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"

OTHER = {
    "apiVersion": "v1",
    "kind": "Config",
    "preferences": {"colors": True},
    "clusters": [{"name": "kind-kind", "cluster": {"server": "https://127.0.0.1:6443",
                                                   "certificate-authority-data": "a2luZA=="}}],
    "users": [{"name": "kind-kind", "user": {"token": "kind-token"}}],
    "contexts": [{"name": "kind-kind", "context": {"cluster": "kind-kind", "user": "kind-kind",
                                                   "namespace": "dev"}}],
    "current-context": "kind-kind",
    "extensions": [{"name": "someone-elses", "extension": {"x": 1}}],
}


def ours(tmp_path, *, server="https://127.0.0.1:6443", token="t0k3n", name="ours.yaml"):
    path = tmp_path / name
    write_kubeconfig(path, server_url=server, ca_pem=CA, user_name="eventplane", token=token)
    return path


def load(path):
    return yaml.safe_load(path.read_text())


def names(config, section):
    return [e["name"] for e in config[section]]


def test_write_kubeconfig_embeds_the_ca_and_the_token(tmp_path):
    path = ours(tmp_path)
    config = load(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config["current-context"] == "eventplane"
    assert config["contexts"] == [{"name": "eventplane", "context": {"cluster": "eventplane", "user": "eventplane"}}]
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == CA
    assert config["users"] == [{"name": "eventplane", "user": {"token": "t0k3n"}}]


def test_write_kubeconfig_embeds_a_client_certificate(tmp_path):
    path = tmp_path / "k"
    write_kubeconfig(path, server_url="https://h:1", ca_pem=CA, user_name="alice",
                     client_cert_pem=b"CERT", client_key_pem=b"KEY", context="c", cluster="k")
    config = load(path)
    user = config["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]) == b"CERT"
    assert base64.b64decode(user["client-key-data"]) == b"KEY"
    assert config["contexts"][0] == {"name": "c", "context": {"cluster": "k", "user": "alice"}}


@pytest.mark.parametrize("credentials, message", [
    pytest.param({}, "needs a token or a client certificate", id="none"),
    pytest.param({"client_cert_pem": b"C"}, "needs its key", id="certificate without key"),
    pytest.param({"token": "t", "client_key_pem": b"K"}, "needs its key", id="key without certificate"),
])
def test_write_kubeconfig_refuses_incomplete_credentials(tmp_path, credentials, message):
    with pytest.raises(KubeconfigError, match=message):
        write_kubeconfig(tmp_path / "k", server_url="https://h:1", ca_pem=CA, user_name="u", **credentials)


def test_merge_creates_a_missing_file_and_directory(tmp_path):
    target = tmp_path / "home" / ".kube" / "config"
    merge_into(target, ours(tmp_path))
    config = load(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert config["current-context"] == "eventplane"
    assert (names(config, "clusters"), names(config, "users"), names(config, "contexts")) == (
        ["eventplane"], ["eventplane"], ["eventplane"])
    assert config["apiVersion"] == "v1" and config["kind"] == "Config"


def test_merge_keeps_other_clusters_users_contexts_and_unknown_keys(tmp_path):
    target = tmp_path / "config"
    target.write_text(yaml.safe_dump(OTHER))
    merge_into(target, ours(tmp_path))
    config = load(target)
    assert names(config, "clusters") == ["kind-kind", "eventplane"]
    assert names(config, "users") == ["kind-kind", "eventplane"]
    assert names(config, "contexts") == ["kind-kind", "eventplane"]
    for section in ("clusters", "users", "contexts"):
        assert config[section][0] == OTHER[section][0]
    assert config["preferences"] == {"colors": True}
    assert config["extensions"] == OTHER["extensions"]
    assert config["current-context"] == "eventplane"


def test_merge_replaces_our_entries_in_place(tmp_path):
    target = tmp_path / "config"
    target.write_text(yaml.safe_dump(OTHER))
    merge_into(target, ours(tmp_path, server="https://127.0.0.1:1111", token="old"))
    before = load(target)
    merge_into(target, ours(tmp_path, server="https://127.0.0.1:2222", token="new"))
    config = load(target)
    assert names(config, "clusters") == names(before, "clusters") == ["kind-kind", "eventplane"]
    assert config["clusters"][1]["cluster"]["server"] == "https://127.0.0.1:2222"
    assert config["users"][1] == {"name": "eventplane", "user": {"token": "new"}}


def test_merge_is_idempotent(tmp_path):
    target = tmp_path / "config"
    target.write_text(yaml.safe_dump(OTHER))
    source = ours(tmp_path)
    merge_into(target, source)
    once = target.read_bytes()
    merge_into(target, source)
    assert target.read_bytes() == once


def test_merge_without_make_current_leaves_the_current_context(tmp_path):
    target = tmp_path / "config"
    target.write_text(yaml.safe_dump(OTHER))
    merge_into(target, ours(tmp_path), make_current=False)
    config = load(target)
    assert config["current-context"] == "kind-kind"
    assert "eventplane" in names(config, "contexts")


@pytest.mark.parametrize("content", [
    pytest.param("", id="empty file"),
    pytest.param("clusters: null\nusers: null\ncontexts: null\n", id="null lists"),
])
def test_merge_into_an_empty_kubeconfig(tmp_path, content):
    target = tmp_path / "config"
    target.write_text(content)
    merge_into(target, ours(tmp_path))
    assert names(load(target), "contexts") == ["eventplane"]


@pytest.mark.parametrize("content", [
    pytest.param("clusters: [unclosed\n", id="not YAML"),
    pytest.param("- a list\n", id="not a mapping"),
    pytest.param("clusters: just-a-string\n", id="clusters not a list"),
])
def test_merge_never_overwrites_a_kubeconfig_it_cannot_read(tmp_path, content):
    target = tmp_path / "config"
    target.write_text(content)
    with pytest.raises(KubeconfigError):
        merge_into(target, ours(tmp_path))
    assert target.read_text() == content
    assert not (tmp_path / "config.lock").exists()


def test_merge_through_a_symlink_changes_the_file_it_points_to(tmp_path):
    real = tmp_path / "dotfiles" / "kubeconfig"
    real.parent.mkdir()
    real.write_text(yaml.safe_dump(OTHER))
    link = tmp_path / "config"
    link.symlink_to(real)
    merge_into(link, ours(tmp_path))
    assert link.is_symlink()
    assert "eventplane" in names(load(real), "contexts")


def test_merge_waits_for_kubectls_lock_and_gives_up_with_a_precise_error(tmp_path, monkeypatch):
    monkeypatch.setattr(kubeconfig, "LOCK_TIMEOUT", 0.2)
    target = tmp_path / "config"
    target.write_text(yaml.safe_dump(OTHER))
    (tmp_path / "config.lock").touch()
    with pytest.raises(KubeconfigError, match="config.lock exists"):
        merge_into(target, ours(tmp_path))
    assert load(target) == OTHER


def test_remove_from_takes_out_only_ours(tmp_path):
    target = tmp_path / "config"
    target.write_text(yaml.safe_dump(OTHER))
    merge_into(target, ours(tmp_path))
    assert remove_from(target, "eventplane") is True
    config = load(target)
    for section in ("clusters", "users", "contexts"):
        assert config[section] == OTHER[section]
    assert config["current-context"] == ""
    assert remove_from(target, "eventplane") is False
    assert remove_from(tmp_path / "absent", "eventplane") is False


def test_remove_from_keeps_a_cluster_another_context_still_uses(tmp_path):
    target = tmp_path / "config"
    merge_into(target, ours(tmp_path))
    config = load(target)
    config["contexts"].append({"name": "mine", "context": {"cluster": "eventplane", "user": "eventplane"}})
    target.write_text(yaml.safe_dump(config))
    remove_from(target, "eventplane")
    config = load(target)
    assert names(config, "contexts") == ["mine"]
    assert names(config, "clusters") == ["eventplane"]
    assert names(config, "users") == ["eventplane"]


@pytest.mark.parametrize("env, existing, expected", [
    pytest.param({}, [], "HOME/.kube/config", id="no KUBECONFIG"),
    pytest.param({"KUBECONFIG": "a:b"}, ["b"], "b", id="first that exists"),
    pytest.param({"KUBECONFIG": "a:b"}, [], "b", id="else the last"),
    pytest.param({"KUBECONFIG": "a"}, [], "a", id="one file"),
])
def test_default_path_follows_kinds_rule(tmp_path, monkeypatch, env, existing, expected):
    monkeypatch.setenv("HOME", str(tmp_path / "HOME"))
    for name in existing:
        (tmp_path / name).touch()
    resolved = {k: ":".join(str(tmp_path / p) for p in v.split(":")) for k, v in env.items()}
    assert default_path(resolved) == tmp_path / expected
