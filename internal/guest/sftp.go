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
	h := osFS{}
	srv := sftp.NewRequestServer(rwc, sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h},
		sftp.WithStartDirectory("/root"))
	// Not srv.Close: it would close the channel before the caller sends
	// the exit status, which scp needs.
	_ = srv.Serve()
}

type osFS struct{}

func (osFS) Fileread(r *sftp.Request) (io.ReaderAt, error) { return os.Open(r.Filepath) }

func (osFS) Filewrite(r *sftp.Request) (io.WriterAt, error) {
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
	return os.OpenFile(r.Filepath, flags, 0o644)
}

func (osFS) Filecmd(r *sftp.Request) error {
	switch r.Method {
	case "Setstat":
		fi, err := os.Stat(r.Filepath)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() && !fi.IsDir() {
			return nil
		}
		a, attrs := r.AttrFlags(), r.Attributes()
		if a.Size {
			if err := os.Truncate(r.Filepath, int64(attrs.Size)); err != nil {
				return err
			}
		}
		if a.Permissions {
			if err := os.Chmod(r.Filepath, attrs.FileMode().Perm()); err != nil {
				return err
			}
		}
		if a.UidGid {
			if err := os.Chown(r.Filepath, int(attrs.UID), int(attrs.GID)); err != nil {
				return err
			}
		}
		if a.Acmodtime {
			return os.Chtimes(r.Filepath, time.Unix(int64(attrs.Atime), 0), time.Unix(int64(attrs.Mtime), 0))
		}
		return nil
	case "Rename", "PosixRename":
		return os.Rename(r.Filepath, r.Target)
	case "Rmdir", "Remove":
		return os.Remove(r.Filepath)
	case "Mkdir":
		return os.Mkdir(r.Filepath, 0o755)
	case "Link":
		return os.Link(r.Filepath, r.Target)
	case "Symlink":
		return os.Symlink(r.Target, r.Filepath)
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

func (osFS) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	switch r.Method {
	case "List":
		entries, err := os.ReadDir(r.Filepath)
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
		fi, err := os.Stat(r.Filepath)
		if err != nil {
			return nil, err
		}
		return lister{fi}, nil
	case "Lstat":
		fi, err := os.Lstat(r.Filepath)
		if err != nil {
			return nil, err
		}
		return lister{fi}, nil
	case "Readlink":
		t, err := os.Readlink(r.Filepath)
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
