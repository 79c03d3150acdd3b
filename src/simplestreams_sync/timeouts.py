"""How long the sync waits on the network: every request to Keystone, Glance, Swift or RGW, Nova and the
source names one of these, so that a connection accepted and then never answered ends the request.

Chosen for real clouds behind load balancers: a healthy API answers in seconds; an upload's answer after
its last byte can take minutes on Ceph RBD (Glance writes out and closes the image first).
"""

from __future__ import annotations

CONNECT = 10.0  # seconds to open a TCP (and TLS) connection
READ = 60.0  # seconds an API call may go without receiving a byte
UPLOAD_ANSWER = 240.0  # seconds Glance may take to answer once an upload's last byte is sent
SOURCE_READ = 60.0  # seconds a download from the source may go without receiving a byte


def api() -> tuple[float, float]:
    """(connect, read) for requests and keystoneauth sessions."""
    return (CONNECT, READ)
