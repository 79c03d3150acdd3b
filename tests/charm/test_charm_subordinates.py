"""image-modifier (script-path -> modify_hook) and nrpe-external-master."""

import subprocess

from ops import testing

from simplestreams_sync.config import load_sync_config


def test_image_modifier_script_path_becomes_the_modify_hook(ctx, machine):
    relation = testing.SubordinateRelation(
        "image-modifier", remote_app_name="modifier", remote_unit_data={"script-path": "/usr/local/bin/modify-image"}
    )

    ctx.run(ctx.on.relation_changed(relation), testing.State(relations=[relation]))

    assert load_sync_config(machine.paths.mirrors).modify_hook == ["sudo", "-n", "--", "/usr/local/bin/modify-image"]


def test_image_modifier_departing_removes_the_modify_hook(ctx, machine):
    relation = testing.SubordinateRelation(
        "image-modifier", remote_app_name="modifier", remote_unit_data={"script-path": "/usr/local/bin/modify-image"}
    )
    ctx.run(ctx.on.relation_changed(relation), testing.State(relations=[relation]))

    ctx.run(ctx.on.relation_broken(relation), testing.State(relations=[relation]))

    assert load_sync_config(machine.paths.mirrors).modify_hook is None


def test_two_image_modifiers_block(ctx, machine):
    first = testing.SubordinateRelation(
        "image-modifier", remote_app_name="one", remote_unit_data={"script-path": "/bin/one"}
    )
    second = testing.SubordinateRelation(
        "image-modifier", remote_app_name="two", remote_unit_data={"script-path": "/bin/two"}
    )

    out = ctx.run(ctx.on.relation_changed(second), testing.State(relations=[first, second]))

    assert out.unit_status == testing.BlockedStatus(
        "Only one image-modifier subordinate is supported, remove all but one of: one, two"
    )
    assert not machine.paths.mirrors.exists()


def test_nrpe_gets_the_nagios_host_name(ctx):
    relation = testing.SubordinateRelation("nrpe-external-master", remote_app_name="nrpe")

    out = ctx.run(
        ctx.on.relation_joined(relation), testing.State(config={"nagios_context": "prod"}, relations=[relation])
    )

    data = out.get_relation(relation.id).local_unit_data
    assert data["nagios_hostname"] == "prod-glance-simplestreams-sync-0"
    assert data["nagios_host_context"] == "prod"


def test_the_sync_user_may_run_exactly_the_image_modifier_script_as_root(ctx, machine):
    relation = testing.SubordinateRelation(
        "image-modifier", remote_app_name="modifier", remote_unit_data={"script-path": "/usr/local/bin/modify-image"}
    )

    ctx.run(ctx.on.relation_changed(relation), testing.State(relations=[relation]))

    rule = machine.paths.sudoers_file.read_text()
    assert [line for line in rule.splitlines() if not line.startswith("#")] == [
        "Defaults!/usr/local/bin/modify-image !env_reset, always_set_home",
        f"{machine.sync_user} ALL=(root) NOPASSWD: /usr/local/bin/modify-image",
    ]
    assert machine.owners(machine.paths.sudoers_file) == ("440", machine.charm_user, machine.charm_group)
    check = subprocess.run(
        ["visudo", "-c", "-q", "-f", str(machine.paths.sudoers_file)], capture_output=True, text=True
    )
    assert (check.returncode, check.stderr) == (0, "")
    assert [path.name for path in machine.paths.sudoers_file.parent.iterdir()] == ["glance-simplestreams-sync"]


def test_the_sudoers_rule_goes_with_the_image_modifier(ctx, machine):
    relation = testing.SubordinateRelation(
        "image-modifier", remote_app_name="modifier", remote_unit_data={"script-path": "/usr/local/bin/modify-image"}
    )
    ctx.run(ctx.on.relation_changed(relation), testing.State(relations=[relation]))

    ctx.run(ctx.on.relation_broken(relation), testing.State(relations=[relation]))

    assert not machine.paths.sudoers_file.exists()


def test_a_script_path_sudoers_cannot_name_blocks_and_grants_nothing(ctx, machine):
    relation = testing.SubordinateRelation(
        "image-modifier", remote_app_name="modifier", remote_unit_data={"script-path": "/bin/sh -c id,ALL"}
    )

    out = ctx.run(ctx.on.relation_changed(relation), testing.State(relations=[relation]))

    assert out.unit_status == testing.BlockedStatus(
        "image-modifier script-path '/bin/sh -c id,ALL' is not an absolute path of plain characters"
    )
    assert not machine.paths.sudoers_file.exists()
