"""mirrors.yaml and identity.yaml: bad input gets an error naming the file, the option and the problem."""

import pytest

from simplestreams_sync.config import ConfigError, load_identity, load_sync_config


def write(tmp_path, text, name="mirrors.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_file_loads_with_defaults(tmp_path):
    config = load_sync_config(
        write(tmp_path, "mirror_list: [{url: 'http://x/'}]\nregion: R2\ncontent_id_template: 'auto.sync.{region}'\n")
    )
    assert config.mirror_list[0].max == 1 and config.content_id == "auto.sync.R2"
    assert config.prefix_for(config.mirror_list[0]) == "auto-sync/"


def test_images_are_named_with_the_global_prefix_as_the_classic_charm_names_them(tmp_path):
    config = load_sync_config(
        write(
            tmp_path,
            """
name_prefix: auto-sync/
mirror_list:
  - {url: 'http://cloud-images.ubuntu.com/releases/', name_prefix: 'ubuntu:released'}
  - {url: 'http://cloud-images.ubuntu.com/daily/', name_prefix: 'ubuntu:daily', image_name_prefix: daily/}
  - {url: 'http://mirror.example/', image_name_prefix: ''}
""",
        )
    )
    released, daily, unprefixed = config.mirror_list
    assert config.prefix_for(released) == "auto-sync/"
    assert config.prefix_for(daily) == "daily/"
    assert config.prefix_for(unprefixed) == ""


@pytest.mark.parametrize(
    "text, message",
    [
        ("mirror_list: [{path: x}]", "mirror_list.0.url: Field required"),
        ("mirror_list: [{url: 'ftp://x'}]", "must start with http://, https:// or file://"),
        ("mirror_list: [{url: 'http://x', max: 0}]", "mirror_list.0.max: Input should be greater than or equal to 1"),
        ("mirror_list: [{url: 'http://x', item_filters: ['arch~(']}]", "item_filters entry 'arch~('"),
        ("mirror_list: [{url: 'http://x'}]\nvisibility: everyone", "visibility: Input should be"),
        ("mirror_list: [{url: 'http://x'}]\ncontent_id_template: '{cloud}'", "may only use {region}"),
        ("mirror_list: [{url: 'http://x'}]\nsurprise: 1", "surprise: Extra inputs are not permitted"),
        ("mirror_list: [", "not valid YAML"),
    ],
)
def test_invalid_file_names_file_option_and_problem(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_sync_config(path)
    assert str(error.value).startswith(str(path)) and message in str(error.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path}/none.yaml: cannot read"):
        load_sync_config(tmp_path / "none.yaml")


def test_identity_error_never_echoes_the_password(tmp_path):
    path = write(
        tmp_path,
        "auth_url: http://k/v3\nusername: u\npassword: [not, a, string, s3cret]\nproject_name: p\n",
        name="identity.yaml",
    )
    with pytest.raises(ConfigError) as error:
        load_identity(path)
    assert "password" in str(error.value) and "s3cret" not in str(error.value)
