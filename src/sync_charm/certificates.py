"""The vault charm's `tls-certificates` unit-data protocol, requirer side (no ops here).

We need vault's CA (and intermediate chain), to trust keystone/glance/swift; vault sends it along
with its answer to a certificate request, so we request one certificate for the unit, as the classic
charm does. When the unit serves the image metadata itself (serve_metadata), that certificate, for the
served addresses, is the web server's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def relation_unit_name(unit_name: str) -> str:
    return unit_name.replace("/", "_")


def request(unit_name: str, common_name: str, sans: Iterable[str]) -> dict[str, str]:
    """What we set on our unit data: one certificate request for this unit."""
    return {
        "unit_name": relation_unit_name(unit_name),
        "cert_requests": json.dumps({common_name: {"sans": sorted(set(sans))}}, sort_keys=True),
    }


def split_pem(text: str) -> list[str]:
    """The PEM certificates in a text, each normalised to end with a newline."""
    return [match.group(0).strip() + "\n" for match in _PEM_CERT.finditer(text or "")]


def read_ca_certificates(units_data: Iterable[Mapping[str, str]]) -> list[str]:
    """The CA and chain certificates vault sent (first unit that sent a CA), or [] while it has not."""
    for data in units_data:
        ca = split_pem(data.get("ca", ""))
        if ca:
            return ca + [cert for cert in split_pem(data.get("chain", "")) if cert not in ca]
    return []


def read_server_certificate(units_data: Iterable[Mapping[str, str]], unit_name: str, common_name: str):
    """(certificate with vault's chain, key) that vault issued for our request, PEM; None until it has.
    Vault answers on its unit data under `<unit_name>.processed_requests`: {"<cn>": {"cert", "key"}}."""
    key = f"{relation_unit_name(unit_name)}.processed_requests"
    for data in units_data:
        try:
            processed = json.loads(data.get(key) or "{}")
        except ValueError:
            continue
        issued = processed.get(common_name) if isinstance(processed, dict) else None
        if isinstance(issued, dict) and issued.get("cert") and issued.get("key"):
            chain = [cert for cert in split_pem(data.get("chain", "")) if cert not in split_pem(issued["cert"])]
            return "".join(split_pem(issued["cert"]) + chain), issued["key"].strip() + "\n"
    return None
