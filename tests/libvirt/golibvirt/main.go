// A small go-libvirt client for the tests (issue 16 part 0): an independent, Go
// implementation of libvirt's remote protocol driving a storage pool.
//
//	client SOCKET URI POOL VOLUME IN OUT
//
// connects to the Unix socket, opens URI, lists the pools and POOL's volumes, uploads
// the file IN into VOLUME, downloads VOLUME into OUT and disconnects. It prints one JSON
// object (lib_version, pools, volumes) on success; on failure the error on stderr and
// exit status 1.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

func fail(what string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 7 {
		fmt.Fprintln(os.Stderr, "usage: client SOCKET URI POOL VOLUME IN OUT")
		os.Exit(2)
	}
	sock, uri, poolName, volName, in, out := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6]
	conn, err := net.DialTimeout("unix", sock, 10*time.Second)
	if err != nil {
		fail("dial", err)
	}
	l := libvirt.NewWithDialer(dialers.NewAlreadyConnected(conn))
	if err := l.ConnectToURI(libvirt.ConnectURI(uri)); err != nil {
		fail("ConnectToURI", err)
	}
	version, err := l.ConnectGetLibVersion()
	if err != nil {
		fail("ConnectGetLibVersion", err)
	}
	pools, _, err := l.ConnectListAllStoragePools(1, 0)
	if err != nil {
		fail("ConnectListAllStoragePools", err)
	}
	pool, err := l.StoragePoolLookupByName(poolName)
	if err != nil {
		fail("StoragePoolLookupByName", err)
	}
	vols, _, err := l.StoragePoolListAllVolumes(pool, 1, 0)
	if err != nil {
		fail("StoragePoolListAllVolumes", err)
	}
	vol, err := l.StorageVolLookupByName(pool, volName)
	if err != nil {
		fail("StorageVolLookupByName", err)
	}
	source, err := os.Open(in)
	if err != nil {
		fail("open IN", err)
	}
	if err := l.StorageVolUpload(vol, source, 0, 0, 0); err != nil {
		fail("StorageVolUpload", err)
	}
	source.Close()
	sink, err := os.Create(out)
	if err != nil {
		fail("create OUT", err)
	}
	if err := l.StorageVolDownload(vol, sink, 0, 0, 0); err != nil {
		fail("StorageVolDownload", err)
	}
	if err := sink.Close(); err != nil {
		fail("close OUT", err)
	}
	if err := l.Disconnect(); err != nil {
		fail("Disconnect", err)
	}
	report := map[string]interface{}{"lib_version": version, "pools": names(pools), "volumes": volNames(vols)}
	if err := json.NewEncoder(os.Stdout).Encode(report); err != nil {
		fail("output", err)
	}
}

func names(pools []libvirt.StoragePool) []string {
	out := []string{}
	for _, p := range pools {
		out = append(out, p.Name)
	}
	return out
}

func volNames(vols []libvirt.StorageVol) []string {
	out := []string{}
	for _, v := range vols {
		out = append(out, v.Name)
	}
	return out
}
