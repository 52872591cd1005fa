// Package cachedir is the layout of firstbad's cache dir, in one place:
// what lives where, for the code that makes it (git, kbuild, pipeline,
// target) and the code that inspects or cleans it (gc, doctor).
//
//	repos/<key>/git          firstbad's clone of a user's repository
//	repos/<key>/source       the user's repository it borrows from
//	repos/<key>/wt/<slot>    checkout slots (<slot>.lock held by a run)
//	repos/<key>/builds/<slot>-<key>  persistent build dirs (.lock in use)
//	builds/<key>             build dirs of checkouts outside a clone
//	artifacts/<key>          built kernels, content-addressed
//	configs/<key>            assembled configs, by their inputs' hash
//	initramfs/               the initramfs base (busybox + agent)
//	probe/accel-*            KVM probe answers, per host boot and QEMU
//	roots/<release>-<key>    Debian roots: build roots of other releases' toolchains,
//	                         guest roots (--rootfs debian:)
//	image-sums/<key>         sha256 of --rootfs images, by path, inode, size, mtime
//	children/                process groups of running firstbads
package cachedir

import "path/filepath"

// Dir is a cache dir.
type Dir string

// Repos holds one directory per cloned repository.
func (d Dir) Repos() string { return filepath.Join(string(d), "repos") }

// Repo is the directory of one clone, by key.
func (d Dir) Repo(key string) string { return filepath.Join(d.Repos(), key) }

// Builds holds build dirs of checkouts outside firstbad's clones.
func (d Dir) Builds() string { return filepath.Join(string(d), "builds") }

// Artifacts is the artifact cache (built kernels).
func (d Dir) Artifacts() string { return filepath.Join(string(d), "artifacts") }

// Configs holds assembled configs, by the hash of their inputs.
func (d Dir) Configs() string { return filepath.Join(string(d), "configs") }

// Initramfs holds the cached initramfs base.
func (d Dir) Initramfs() string { return filepath.Join(string(d), "initramfs") }

// Probes holds the KVM probe answers.
func (d Dir) Probes() string { return filepath.Join(string(d), "probe") }

// Roots holds the Debian roots: build roots (toolchains of other
// releases) and guest roots (--rootfs debian:).
func (d Dir) Roots() string { return filepath.Join(string(d), "roots") }

// ImageSums remembers the sha256 of disk images (--rootfs image:) by
// their identity (device, inode, size, time).
func (d Dir) ImageSums() string { return filepath.Join(string(d), "image-sums") }

// Distcc keeps distcc's locks and node backoff state for --cluster.
func (d Dir) Distcc() string { return filepath.Join(string(d), "distcc") }

// Children is the registry of process groups a firstbad started.
func (d Dir) Children() string { return filepath.Join(string(d), "children") }

// Clone layout, inside a Repo dir.

// CloneGit is the clone's own work tree root inside repo dir r.
func CloneGit(r string) string { return filepath.Join(r, "git") }

// CloneSource is the file naming the user's repository.
func CloneSource(r string) string { return filepath.Join(r, "source") }

// CloneSlots holds the checkout slots of a clone.
func CloneSlots(r string) string { return filepath.Join(r, "wt") }

// CloneBuilds holds the lists of recent builds of a clone's checkouts (and
// their build dirs, before those moved into the checkouts).
func CloneBuilds(r string) string { return filepath.Join(r, "builds") }

// BuildDirPrefix names a persistent build dir inside a checkout of a
// clone: <slot>/.firstbad-build-<key> (a dot-dir, which the kernel ignores).
const BuildDirPrefix = ".firstbad-build-"

// CloneBuildDirs is the glob of the build dirs in a clone's checkouts.
func CloneBuildDirs(r string) string { return filepath.Join(CloneSlots(r), "*", BuildDirPrefix+"*") }
