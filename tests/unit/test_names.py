import pytest

from eventplane.objects.names import dns1123_label, dns1123_subdomain, path_segment_name


@pytest.mark.parametrize("name, ok", [
    ("web", True), ("web-1", True), ("1abc", True), ("a" * 63, True),
    ("a" * 64, False), ("Web", False), ("-web", False), ("web-", False), ("we.b", False), ("", False),
])
def test_dns1123_label(name, ok):
    assert (dns1123_label(name) == []) is ok


@pytest.mark.parametrize("name, ok", [
    ("example.com", True), ("a" * 253, True), ("a.b-c.d", True),
    ("a" * 254, False), ("a..b", False), (".a", False), ("a_b", False), ("UPPER", False),
])
def test_dns1123_subdomain(name, ok):
    assert (dns1123_subdomain(name) == []) is ok


def test_subdomain_error_message_is_kubernetes_wording():
    [msg] = dns1123_subdomain("Bad_Name")
    assert msg.startswith("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters")


@pytest.mark.parametrize("name, ok", [
    ("system:controller:job", True), ("a b", True), (".", False), ("..", False), ("a/b", False), ("a%b", False),
])
def test_path_segment_name(name, ok):
    assert (path_segment_name(name) == []) is ok
