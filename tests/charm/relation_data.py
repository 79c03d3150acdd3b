"""What the charm's relations carry in the state-transition tests: keystone's and vault's answers."""

import base64

# Not a real CA; the charm only handles PEM text.
CA_PEM = (
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUVaultRootCA0000000000000000000wCgYIKoZIzj0EAwIw\n"
    "-----END CERTIFICATE-----\n"
)
CHAIN_PEM = (
    "-----BEGIN CERTIFICATE-----\nMIIBtDCCAVqgAwIBAgIUIntermediate00000000000000000wCgYIKoZIzj0EAwIw\n"
    "-----END CERTIFICATE-----\n"
)
OPERATOR_CA_PEM = (
    "-----BEGIN CERTIFICATE-----\nMIIBsTCCAVegAwIBAgIUOperatorCA00000000000000000wCgYIKoZIzj0EAwIw\n"
    "-----END CERTIFICATE-----\n"
)
OPERATOR_CA_B64 = base64.b64encode(OPERATOR_CA_PEM.encode()).decode()
SELF_SIGNED_CA_PEM = (
    "-----BEGIN CERTIFICATE-----\nMIIBsjCCAVigAwIBAgIUSelfSignedCA00000000000000000wCgYIKoZIzj0EAwIw\n"
    "-----END CERTIFICATE-----\n"
)

KEYSTONE_V3 = {
    "service_host": "10.5.0.10",
    "service_port": "5000",
    "service_protocol": "https",
    "auth_host": "10.5.0.11",
    "auth_port": "35357",
    "auth_protocol": "https",
    "internal_host": "10.5.0.12",
    "internal_port": "5000",
    "internal_protocol": "https",
    "api_version": "3",
    "service_username": "image-stream",
    "service_password": "s3cret-pw",
    "service_tenant": "services",
    "service_tenant_id": "0f1e2d",
    "service_domain": "service_domain",
    "service_domain_id": "9a8b7c",
}

METADATA_URL = "https://swift.example:443/v1/AUTH_0f1e2d/simplestreams/data"
# What the engine names for keystone's product-streams endpoint: the object store's URL of each interface.
PRODUCT_STREAMS_URLS = {
    "public": "https://swift-public.example:443/v1/AUTH_0f1e2d/simplestreams/data",
    "internal": METADATA_URL,
    "admin": "https://swift-admin.example:443/v1/AUTH_0f1e2d/simplestreams/data",
}
