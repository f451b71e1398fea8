"""images list/prune: only patchswarm environment images, and here only the ones this test built."""

import uuid

import pytest

from sandbox.environments import EnvSpec, build_env_image
from sandbox.image_store import list_images, parse_age, parse_size, prune_images


@pytest.fixture
def own_images(docker_client, base_image, tmp_path):
    """Three tiny images of this test alone: two layers on the base, one built on the first."""
    mark = {"patchswarm.test": uuid.uuid4().hex}
    built = []
    first = build_env_image(docker_client, None, EnvSpec(root_setup=[f"echo {mark} > /one"], labels=mark),
                            cache_dir=tmp_path)
    built.append(first.tag)
    second = build_env_image(docker_client, None, EnvSpec(root_setup=[f"head -c 300000 /dev/urandom > /two # {mark}"],
                                                          labels=mark), cache_dir=tmp_path)
    built.append(second.tag)
    child = build_env_image(docker_client, None, EnvSpec(base_image=first.tag, root_setup=["echo c > /child"],
                                                         labels=mark), cache_dir=tmp_path)
    built.append(child.tag)
    yield mark, built
    for tag in reversed(built):  # whatever a failed assertion left
        try:
            docker_client.images.remove(tag)
        except Exception:  # noqa: BLE001, S110 - already removed by the test
            pass


def test_list_shows_only_the_matching_environment_images_oldest_first(docker_client, own_images):
    mark, built = own_images
    images = list_images(docker_client, match=mark)
    assert [i.tags[0] for i in images] == built
    assert images[1].size >= 300_000  # its own layer, not the base it shares
    assert all(i.labels["patchswarm.kind"] == "env" for i in images)


def test_prune_by_size_removes_the_oldest_and_a_layer_before_its_base(docker_client, own_images):
    mark, built = own_images
    dry = prune_images(docker_client, max_total_bytes=0, match=mark, dry_run=True)
    assert sorted(i.tags[0] for i in dry.removed) == sorted(built)
    assert len(list_images(docker_client, match=mark)) == 3  # a dry run removes nothing
    # Everything older than a day: nothing here.
    assert prune_images(docker_client, older_than_s=86400, match=mark).removed == []
    done = prune_images(docker_client, max_total_bytes=0, match=mark)
    assert [i.tags[0] for i in done.removed] == [built[2], built[1], built[0]]  # child before its base
    assert done.freed >= 300_000 and not done.skipped
    assert list_images(docker_client, match=mark) == []


def test_sizes_and_ages_parse_and_bad_ones_name_themselves():
    assert parse_size("40G") == 40 * 10**9 and parse_size("500MB") == 5 * 10**8 and parse_size("12") == 12
    assert parse_age("7d") == 7 * 86400 and parse_age("30m") == 1800
    with pytest.raises(ValueError, match="not a size: 'lots'"):
        parse_size("lots")
    with pytest.raises(ValueError, match="not an age: '3y'"):
        parse_age("3y")
