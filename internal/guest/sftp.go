package guest

import (
	"io"
	"os"
	"time"

	"github.com/pkg/sftp"
)

// serveSFTP serves the SFTP subsystem on the guest's own file system. It
// is pkg/sftp's request server with plain os calls, and one difference
// from its stock server: setting attributes on something other than a
// regular file or directory is a no-op rather than an error, so that
// `scp bigfile guest:/dev/null` (which truncates and chmods the target
// after the copy) succeeds.
func serveSFTP(rwc io.ReadWriteCloser) {
	h := osFS{root: chrootPath}
	srv := sftp.NewRequestServer(rwc, sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h},
		sftp.WithStartDirectory("/root"))
	// Not srv.Close: it would close the channel before the caller sends
	// the exit status, which scp needs.
	_ = srv.Serve()
}

// osFS serves the file system under root ("" for the initramfs's own): a
// path's last symlinks are still the kernel's to follow, from the agent's
// /, so an absolute link inside the root points outside it.
type osFS struct{ root string }

// path is a request's path (or target) under the root.
func (fs osFS) path(p string) string { return fs.root + p }

func (fs osFS) Fileread(r *sftp.Request) (io.ReaderAt, error) { return os.Open(fs.path(r.Filepath)) }

func (fs osFS) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	pf := r.Pflags()
	flags := os.O_WRONLY
	if pf.Read {
		flags = os.O_RDWR
	}
	for _, f := range []struct {
		on   bool
		flag int
	}{{pf.Creat, os.O_CREATE}, {pf.Trunc, os.O_TRUNC}, {pf.Excl, os.O_EXCL}} {
		if f.on {
			flags |= f.flag
		}
	}
	// O_APPEND is left out: WriteAt refuses it, and SFTP clients send
	// offsets anyway.
	return os.OpenFile(fs.path(r.Filepath), flags, 0o644)
}

func (fs osFS) Filecmd(r *sftp.Request) error {
	name, target := fs.path(r.Filepath), fs.path(r.Target)
	switch r.Method {
	case "Setstat":
		fi, err := os.Stat(name)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() && !fi.IsDir() {
			return nil
		}
		a, attrs := r.AttrFlags(), r.Attributes()
		if a.Size {
			if err := os.Truncate(name, int64(attrs.Size)); err != nil {
				return err
			}
		}
		if a.Permissions {
			if err := os.Chmod(name, attrs.FileMode().Perm()); err != nil {
				return err
			}
		}
		if a.UidGid {
			if err := os.Chown(name, int(attrs.UID), int(attrs.GID)); err != nil {
				return err
			}
		}
		if a.Acmodtime {
			return os.Chtimes(name, time.Unix(int64(attrs.Atime), 0), time.Unix(int64(attrs.Mtime), 0))
		}
		return nil
	case "Rename", "PosixRename":
		return os.Rename(name, target)
	case "Rmdir", "Remove":
		return os.Remove(name)
	case "Mkdir":
		return os.Mkdir(name, 0o755)
	case "Link":
		return os.Link(name, target)
	case "Symlink":
		return os.Symlink(r.Target, name) // the link as given: it is read inside the root
	}
	return sftp.ErrSSHFxOpUnsupported
}

// lister serves a listing from a slice.
type lister []os.FileInfo

func (l lister) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	if n < len(out) {
		return n, io.EOF
	}
	return n, nil
}

func (fs osFS) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	name := fs.path(r.Filepath)
	switch r.Method {
	case "List":
		entries, err := os.ReadDir(name)
		if err != nil {
			return nil, err
		}
		var l lister
		for _, e := range entries {
			if fi, err := e.Info(); err == nil {
				l = append(l, fi)
			}
		}
		return l, nil
	case "Stat":
		fi, err := os.Stat(name)
		if err != nil {
			return nil, err
		}
		return lister{fi}, nil
	case "Lstat":
		fi, err := os.Lstat(name)
		if err != nil {
			return nil, err
		}
		return lister{fi}, nil
	case "Readlink":
		t, err := os.Readlink(name)
		if err != nil {
			return nil, err
		}
		return lister{linkInfo(t)}, nil
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}

// linkInfo carries a link target as the name of a FileInfo (how pkg/sftp
// returns Readlink).
type linkInfo string

func (l linkInfo) Name() string       { return string(l) }
func (l linkInfo) Size() int64        { return 0 }
func (l linkInfo) Mode() os.FileMode  { return os.ModeSymlink }
func (l linkInfo) ModTime() time.Time { return time.Time{} }
func (l linkInfo) IsDir() bool        { return false }
func (l linkInfo) Sys() any           { return nil }
