"""Unmodified virsh makes and removes volumes on our storage server: STORAGE_VOL_CREATE_XML
(name, capacity, allocation from the XML as libvirt reads it; a sparse file; synced before
the answer) and STORAGE_VOL_DELETE, names that would leave the directory refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from libvirt_helpers import MiB, virsh
from libvirt_servers import OurServer
from realpeers import require

from xdrstream.libvirt import LibvirtClient, LibvirtError
from xdrstream.libvirt.errors import VIR_ERR_STORAGE_VOL_EXIST, VIR_ERR_XML_ERROR

pytestmark = [pytest.mark.real_peers, pytest.mark.timeout(60)]


def test_virsh_vol_create_as_and_vol_delete(our_server: OurServer) -> None:
    require("virsh")
    result = virsh(our_server.uri, "vol-create-as", "images", "new.img", "10M", "--allocation", "0")
    assert result.returncode == 0, result.stderr
    volume = our_server.directory / "new.img"
    st = volume.stat()
    assert st.st_size == 10 * MiB and st.st_blocks == 0  # sparse: capacity, nothing allocated
    result = virsh(our_server.uri, "vol-info", "--pool", "images", "new.img")
    assert result.returncode == 0 and "10.00 MiB" in result.stdout, result.stdout
    again = virsh(our_server.uri, "vol-create-as", "images", "new.img", "1M")
    assert again.returncode != 0 and "exists already" in again.stderr
    result = virsh(our_server.uri, "vol-delete", "--pool", "images", "new.img")
    assert result.returncode == 0, result.stderr
    assert not volume.exists()


def test_allocation_and_units_as_libvirt_reads_them(our_server: OurServer) -> None:
    with LibvirtClient.open(our_server.uri) as client:
        pool = client.lookup_pool("images")
        xml = (
            "<volume><name>a.raw</name><capacity unit='KiB'>64</capacity>"
            "<allocation unit='KB'>8</allocation></volume>"
        )
        vol = client.call("STORAGE_VOL_CREATE_XML", pool=pool, xml=xml, flags=0).vol
        assert vol.name == "a.raw"
        st = (our_server.directory / "a.raw").stat()
        assert st.st_size == 64 * 1024 and st.st_blocks * 512 >= 8000
        for bad, code in [
            (
                "<volume><name>a.raw</name><capacity>1</capacity></volume>",
                VIR_ERR_STORAGE_VOL_EXIST,
            ),
            ("<volume><capacity>1</capacity></volume>", VIR_ERR_XML_ERROR),
            ("<volume><name>b</name></volume>", VIR_ERR_XML_ERROR),
            (
                "<volume><name>b</name><capacity unit='furlong'>1</capacity></volume>",
                VIR_ERR_XML_ERROR,
            ),
            ("<volume><name>b", VIR_ERR_XML_ERROR),
        ]:
            with pytest.raises(LibvirtError) as caught:
                client.call("STORAGE_VOL_CREATE_XML", pool=pool, xml=bad, flags=0)
            assert caught.value.error.code == code, bad
    assert sorted(os.listdir(our_server.directory)) == ["a.raw"]


@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", "sub/x", ".hidden", ".."])
def test_names_that_leave_the_directory_are_refused(our_server: OurServer, name: str) -> None:
    outside = our_server.directory.parent
    before = sorted(os.listdir(outside))
    with LibvirtClient.open(our_server.uri) as client:
        pool = client.lookup_pool("images")
        xml = f"<volume><name>{name}</name><capacity>4096</capacity></volume>"
        with pytest.raises(LibvirtError, match="cannot contain"):
            client.call("STORAGE_VOL_CREATE_XML", pool=pool, xml=xml, flags=0)
    assert os.listdir(our_server.directory) == []
    assert sorted(os.listdir(outside)) == before


def test_create_and_delete_sync_before_answering(
    our_server: OurServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))

    monkeypatch.setattr(os, "fsync", fsync)
    directory = str(our_server.directory)
    with LibvirtClient.open(our_server.uri) as client:
        pool = client.lookup_pool("images")
        xml = "<volume><name>v</name><capacity>4096</capacity></volume>"
        vol = client.call("STORAGE_VOL_CREATE_XML", pool=pool, xml=xml, flags=0).vol
        assert synced == [str(Path(directory) / "v"), directory]  # file, then its name
        client.call("STORAGE_VOL_DELETE", vol=vol, flags=0)
        assert synced[2:] == [directory]  # the removal is durable before the answer
