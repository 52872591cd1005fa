// Package artstore shares built kernels between machines: a plain HTTP
// store (GET and PUT, as nginx with WebDAV, bazel-remote or an object
// store's HTTP gateway serve) that holds firstbad's artifact cache entries
// by their content key. An entry is its files under KEY/UPLOAD/ and,
// written last, KEY/manifest.json naming the upload and each file's size
// and sha256: readers see an entry only once it is whole (also while two
// machines store it at once), and check every file they fetch.
package artstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/firstbad/firstbad/internal/netrc"
)

// ErrNotFound is an entry the store does not have (whole).
var ErrNotFound = errors.New("not in the artifact store")

// Store is a shared artifact store at a base URL.
type Store struct {
	base       *url.URL
	user, pass string
	client     *http.Client
}

// File is one file of an entry, as its manifest lists it.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

type manifest struct {
	Files []File `json:"files"`
	// Upload is the dir under KEY/ holding these files: each upload has
	// its own, so two machines storing one key at once never mix their
	// files, and the manifest (one PUT, which the server renames into
	// place) is the only switch. Empty in entries of older firstbads:
	// their files are right under KEY/.
	Upload string `json:"upload,omitempty"`
}

// path is where a file of the entry lives, below KEY/.
func (m manifest) path(name string) string {
	if m.Upload == "" {
		return url.PathEscape(name)
	}
	return url.PathEscape(m.Upload) + "/" + url.PathEscape(name)
}

// New opens the store at rawURL (http or https). Credentials come from
// the netrc file ($NETRC, else ~/.netrc), never from the URL: a URL with
// a password ends up in logs and reports.
func New(rawURL string) (*Store, error) {
	u, err := url.Parse(strings.TrimRight(rawURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--artifact-store %q: give an http:// or https:// URL", rawURL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("--artifact-store: put credentials in ~/.netrc (or $NETRC), not in the URL")
	}
	s := &Store{base: u, client: &http.Client{Timeout: 10 * time.Minute}}
	s.user, s.pass = netrc.Lookup(u.Hostname())
	return s, nil
}

// String is the store's URL (it holds no credentials).
func (s *Store) String() string { return s.base.String() }

// url is the URL of a path below KEY/ (already escaped).
func (s *Store) url(key, path string) string {
	return s.base.String() + "/" + url.PathEscape(key) + "/" + path
}

func (s *Store) do(ctx context.Context, method, u string, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
	}
	if s.user != "" {
		req.SetBasicAuth(s.user, s.pass)
	}
	return s.client.Do(req)
}

// Has says whether the store holds the whole entry for key.
func (s *Store) Has(ctx context.Context, key string) (bool, error) {
	_, err := s.manifest(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (s *Store) manifest(ctx context.Context, key string) (manifest, error) {
	var m manifest
	resp, err := s.do(ctx, http.MethodGet, s.url(key, "manifest.json"), nil, 0)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return m, ErrNotFound
	case resp.StatusCode != http.StatusOK:
		return m, fmt.Errorf("GET %s: %s", s.url(key, "manifest.json"), resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&m); err != nil || len(m.Files) == 0 {
		return m, fmt.Errorf("the manifest of %s is damaged (%v)", key, err)
	}
	if strings.Trim(m.Upload, "0123456789abcdef") != "" {
		return m, fmt.Errorf("the manifest of %s names the upload %q, not one of firstbad's", key, m.Upload)
	}
	return m, nil
}

// Fetch downloads the entry for key into dir (which must be empty),
// checking each file against the manifest's size and sha256. A partial or
// corrupt entry is an error that says so (the caller builds instead).
func (s *Store) Fetch(ctx context.Context, key, dir string) error {
	m, err := s.manifest(ctx, key)
	if err != nil {
		return err
	}
	for _, f := range m.Files {
		if f.Name != filepath.Base(f.Name) || f.Name == "." || f.Name == ".." {
			return fmt.Errorf("the manifest of %s names %q, not a file of the entry", key, f.Name)
		}
		if err := s.fetchFile(ctx, s.url(key, m.path(f.Name)), key, f, filepath.Join(dir, f.Name)); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) fetchFile(ctx context.Context, u, key string, f File, dst string) error {
	resp, err := s.do(ctx, http.MethodGet, u, nil, 0)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s of %s: %s (the entry is partial)", f.Name, key, resp.Status)
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(resp.Body, f.Size+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != f.Size || got != f.SHA256 {
		return fmt.Errorf("%s of %s is corrupt: %d bytes, sha256 %.12s; the manifest says %d bytes, %.12s", f.Name, key, n, got, f.Size, f.SHA256)
	}
	return nil
}

// Put uploads the entry in dir (its regular files) under key: the files
// first, into this upload's own dir, the manifest last.
func (s *Store) Put(ctx context.Context, key, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	m := manifest{Upload: hex.EncodeToString(id)}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		f, err := s.putFile(ctx, key, m, filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		m.Files = append(m.Files, f)
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Name < m.Files[j].Name })
	data, _ := json.Marshal(m)
	return s.put(ctx, s.url(key, "manifest.json"), strings.NewReader(string(data)), int64(len(data)))
}

func (s *Store) putFile(ctx context.Context, key string, m manifest, path string) (File, error) {
	in, err := os.Open(path)
	if err != nil {
		return File{}, err
	}
	defer in.Close()
	h := sha256.New()
	size, err := io.Copy(h, in)
	if err != nil {
		return File{}, err
	}
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return File{}, err
	}
	f := File{Name: filepath.Base(path), Size: size, SHA256: hex.EncodeToString(h.Sum(nil))}
	return f, s.put(ctx, s.url(key, m.path(f.Name)), in, size)
}

func (s *Store) put(ctx context.Context, u string, body io.Reader, size int64) error {
	resp, err := s.do(ctx, http.MethodPut, u, body, size)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT %s: %s", u, resp.Status)
	}
	return nil
}
