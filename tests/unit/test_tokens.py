"""The static token file: kube-apiserver's format, lookups, reloads, the admin token."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from eventplane.auth import MASTERS_GROUP, TokenFile, TokenFileError, User, ensure_admin_token

AUTHENTICATED = "system:authenticated"


@pytest.mark.parametrize("line, token, expected", [
    pytest.param("t1,alice,u1", "t1", User("alice", "u1", (AUTHENTICATED,)), id="no groups"),
    pytest.param('t1,alice,u1,"dev,ops"', "t1", User("alice", "u1", ("dev", "ops", AUTHENTICATED)),
                 id="quoted groups"),
    pytest.param("t1,alice,u1,dev", "t1", User("alice", "u1", ("dev", AUTHENTICATED)), id="one group"),
    pytest.param("t1, alice, u1", "t1", User("alice", "u1", (AUTHENTICATED,)), id="space after comma trimmed"),
    pytest.param('t1,alice,u1,"dev,,system:authenticated"', "t1",
                 User("alice", "u1", ("dev", AUTHENTICATED)), id="empty and repeated groups dropped"),
    pytest.param("t1,alice,u1,dev,ignored", "t1", User("alice", "u1", ("dev", AUTHENTICATED)),
                 id="columns after the fourth ignored"),
])
def test_a_line_names_a_user(tmp_path, line, token, expected):
    f = tmp_path / "tokens.csv"
    f.write_text(line + "\n")
    assert TokenFile.load(f).lookup(token) == expected


@pytest.mark.parametrize("presented", [
    pytest.param("", id="empty"),
    pytest.param("secret-toke", id="prefix"),
    pytest.param("secret-token-", id="longer"),
    pytest.param("SECRET-TOKEN", id="other case"),
    pytest.param("alice", id="a user name"),
])
def test_anything_but_the_exact_token_is_unknown(tmp_path, presented):
    f = tmp_path / "tokens.csv"
    f.write_text("secret-token,alice,u1\n")
    assert TokenFile.load(f).lookup(presented) is None


def test_blank_lines_and_empty_tokens_are_skipped_and_the_last_duplicate_wins(tmp_path):
    f = tmp_path / "tokens.csv"
    f.write_text("t1,alice,u1\n\n,nobody,u0\nt2,bob,u2\nt1,carol,u3\n")
    tokens = TokenFile.load(f)
    assert len(tokens) == 2
    assert tokens.lookup("t1").name == "carol"
    assert tokens.lookup("t2").name == "bob"


def test_a_line_with_fewer_than_three_columns_is_an_error_at_load(tmp_path):
    f = tmp_path / "tokens.csv"
    f.write_text("t1,alice,u1\nt2,bob\n")
    with pytest.raises(TokenFileError, match="record 2: needs at least 3 columns"):
        TokenFile.load(f)


def test_a_missing_file_is_an_error_at_load(tmp_path):
    with pytest.raises(TokenFileError, match="does not exist"):
        TokenFile.load(tmp_path / "absent.csv")


def test_a_replaced_file_is_reread(tmp_path):
    f = tmp_path / "tokens.csv"
    f.write_text("t1,alice,u1\n")
    tokens = TokenFile.load(f)
    new = tmp_path / "new.csv"
    new.write_text("t2,bob,u2\n")
    os.replace(new, f)  # how editors and config management write
    assert tokens.lookup("t1") is None
    assert tokens.lookup("t2").name == "bob"


def test_a_file_changed_in_place_is_reread(tmp_path):
    f = tmp_path / "tokens.csv"
    f.write_text("t1,alice,u1\n")
    tokens = TokenFile.load(f)
    assert tokens.lookup("t2") is None
    with open(f, "a") as out:
        out.write("t2,bob,u2\n")
    assert tokens.lookup("t2").name == "bob"


def test_a_removed_file_revokes_every_token(tmp_path):
    f = tmp_path / "tokens.csv"
    f.write_text("t1,alice,u1\n")
    tokens = TokenFile.load(f)
    f.unlink()
    assert tokens.lookup("t1") is None
    f.write_text("t1,alice,u1\n")
    assert tokens.lookup("t1").name == "alice"


def test_a_file_that_stops_parsing_keeps_the_last_good_tokens(tmp_path):
    f = tmp_path / "tokens.csv"
    f.write_text("t1,alice,u1\n")
    tokens = TokenFile.load(f)
    f.write_text("t1,alice,u1\nt2,half-writ")
    assert tokens.lookup("t1").name == "alice"
    assert tokens.lookup("t2") is None
    f.write_text("t1,alice,u1\nt2,bob,u2\n")
    assert tokens.lookup("t2").name == "bob"


def test_ensure_admin_token_creates_a_private_file_for_an_admin_in_system_masters(tmp_path):
    f = tmp_path / "sub" / "tokens.csv"
    token = ensure_admin_token(f)
    assert len(token) >= 43  # 32 random bytes, base64url
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert f.read_text() == f"{token},admin,admin,system:masters\n"
    assert TokenFile.load(f).lookup(token) == User("admin", "admin", (MASTERS_GROUP, AUTHENTICATED))


def test_ensure_admin_token_returns_the_same_token_on_every_start(tmp_path):
    f = tmp_path / "tokens.csv"
    first = ensure_admin_token(f)
    assert ensure_admin_token(f) == first
    assert f.read_text().count("\n") == 1


def test_ensure_admin_token_reads_an_existing_file_it_did_not_write(tmp_path):
    f = tmp_path / "tokens.csv"
    f.write_text("t-bob,bob,u2\nt-admin,admin,admin,system:masters\n")
    assert ensure_admin_token(f) == "t-admin"
    assert f.read_text() == "t-bob,bob,u2\nt-admin,admin,admin,system:masters\n"


def test_ensure_admin_token_does_not_re_grant_an_admin_that_was_removed(tmp_path):
    f = tmp_path / "tokens.csv"
    f.write_text("t-bob,bob,u2\n")
    with pytest.raises(TokenFileError, match="no line for user 'admin'"):
        ensure_admin_token(f)
    assert f.read_text() == "t-bob,bob,u2\n"


def test_ensure_admin_token_leaves_no_temporary_files(tmp_path):
    f = tmp_path / "tokens.csv"
    ensure_admin_token(f)
    ensure_admin_token(f)
    assert [p.name for p in Path(tmp_path).iterdir()] == ["tokens.csv"]


def test_ensure_user_token_adds_a_line_once_and_a_loaded_file_sees_it(tmp_path):
    from eventplane.auth.tokens import ensure_user_token

    path = tmp_path / "tokens.csv"
    admin = ensure_admin_token(path)
    tokens = TokenFile.load(path)
    node = ensure_user_token(path, "system:node:n1", ("system:nodes",))
    assert node != admin and ensure_user_token(path, "system:node:n1", ("system:nodes",)) == node
    user = tokens.lookup(node)  # the file changed under the loaded TokenFile: it reloads
    assert (user.name, user.groups) == ("system:node:n1", ("system:nodes", "system:authenticated"))
    # Other groups are another identity: a new token, the old one kept.
    other = ensure_user_token(path, "system:node:n1")
    assert other not in (node, admin) and tokens.lookup(other).groups == ("system:authenticated",)
    assert tokens.lookup(admin).name == "admin" and tokens.lookup(node) is not None
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["tokens.csv"]
