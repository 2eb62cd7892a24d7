package s3relay

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeMultipart is an S3 server for multipart uploads only. Parts it is
// sent are held until release is closed. lateParts is how many times the
// upload is still listed after an abort, as when a part S3 was storing
// lands after it.
type fakeMultipart struct {
	release   chan struct{}
	lateParts int

	mu        sync.Mutex
	live      bool // the upload exists
	inFlight  int  // parts received and not answered
	aborts    int
	abortedIn int // parts in flight at an abort, summed
	cancelled int // parts whose request the client cut
}

func (f *fakeMultipart) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPost && q.Has("uploads"):
		f.mu.Lock()
		f.live = true
		f.mu.Unlock()
		fmt.Fprint(w, `<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>`)
	case r.Method == http.MethodPut && q.Has("partNumber"):
		f.mu.Lock()
		f.inFlight++
		f.mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		<-f.release
		f.mu.Lock()
		f.inFlight--
		if r.Context().Err() != nil {
			f.cancelled++
		}
		f.mu.Unlock()
		w.Header().Set("ETag", `"e"`)
	case r.Method == http.MethodDelete && q.Get("uploadId") == "u1":
		f.mu.Lock()
		f.aborts++
		f.abortedIn += f.inFlight
		f.live = false
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && q.Get("uploadId") == "u1":
		f.mu.Lock()
		live := f.live
		if !live && f.lateParts > 0 {
			f.lateParts--
			live = true
		}
		f.mu.Unlock()
		if !live {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `<Error><Code>NoSuchUpload</Code><Message>no such upload</Message></Error>`)
			return
		}
		fmt.Fprint(w, `<ListPartsResult><Bucket>b</Bucket><Key>k</Key><UploadId>u1</UploadId><Part><PartNumber>1</PartNumber><ETag>"e"</ETag><Size>1</Size></Part></ListPartsResult>`)
	default:
		http.Error(w, r.Method+" "+r.URL.String(), http.StatusNotImplemented)
	}
}

// cutSource yields n bytes, then fails and closes cut.
func cutSource(n int, cut chan struct{}) Source {
	return func(context.Context) (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(io.LimitReader(zeros{}, int64(n)), cutReader{cut})), nil
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

type cutReader struct{ cut chan struct{} }

func (c cutReader) Read([]byte) (int, error) {
	close(c.cut)
	return 0, fmt.Errorf("stream cut")
}

func fakeClient(t *testing.T, f *fakeMultipart) *Client {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	r, err := New(Config{PartSize: 5 << 20, Concurrency: 2, Attempts: 1, Backoff: func(int) time.Duration { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.Client(Endpoint{URL: srv.URL, Region: "r", AccessKeyID: "a", SecretAccessKey: "s", PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// A failed source stops the upload, but the parts already being stored
// are let finish before the abort: one cut mid-way could be stored after
// the abort and leave the upload behind.
func TestUploadFailureAbortsAfterPartsInFlight(t *testing.T) {
	f := &fakeMultipart{release: make(chan struct{})}
	c := fakeClient(t, f)
	cut := make(chan struct{})
	go func() { <-cut; close(f.release) }()
	_, err := c.Upload(context.Background(), "b", "k", cutSource(12<<20, cut), nil)
	if err == nil || !strings.Contains(err.Error(), "stream cut") || strings.Contains(err.Error(), "abort") {
		t.Fatalf("upload: %v", err)
	}
	if st := c.r.Stats()[Upload]; st.Failed != 1 || st.Succeeded != 0 || st.Attempts != 1 || st.Bytes != 0 || st.Duration <= 0 {
		t.Errorf("upload stats %+v, want one failed transfer of one attempt", st)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.aborts != 1 || f.abortedIn != 0 || f.cancelled != 0 || f.live {
		t.Errorf("aborts %d, parts in flight at abort %d, parts cancelled %d, upload left %v; want 1, 0, 0, false",
			f.aborts, f.abortedIn, f.cancelled, f.live)
	}
}

// An upload still listed after its abort is aborted again until it is gone.
func TestUploadAbortRepeatsUntilGone(t *testing.T) {
	for _, tc := range []struct {
		late       int
		wantAborts int
		wantErr    string
	}{
		{late: 0, wantAborts: 1},
		{late: 2, wantAborts: 3},
		{late: abortAttempts, wantAborts: abortAttempts, wantErr: fmt.Sprintf("aborting upload u1 failed: upload still listed after %d aborts", abortAttempts)},
	} {
		t.Run(fmt.Sprint(tc.late), func(t *testing.T) {
			f := &fakeMultipart{release: make(chan struct{}), lateParts: tc.late}
			close(f.release)
			c := fakeClient(t, f)
			_, err := c.Upload(context.Background(), "b", "k", cutSource(7<<20, make(chan struct{})), nil)
			if err == nil || !strings.Contains(err.Error(), "stream cut") {
				t.Fatalf("upload: %v", err)
			}
			if got := err.Error(); tc.wantErr == "" && strings.Contains(got, "abort") || !strings.Contains(got, tc.wantErr) {
				t.Errorf("error %q, want it to say %q", got, tc.wantErr)
			}
			if f.aborts != tc.wantAborts {
				t.Errorf("%d aborts, want %d", f.aborts, tc.wantAborts)
			}
		})
	}
}

// truncatedSource is n zero bytes, then the error a tar entry cut short
// gives (archive/tar's io.ErrUnexpectedEOF), as an archive stream from a
// host whose connection broke.
func truncatedSource(n int) Source {
	return func(context.Context) (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(io.LimitReader(zeros{}, int64(n)), errReader{io.ErrUnexpectedEOF})), nil
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// A source that breaks off with io.ErrUnexpectedEOF is a failed upload,
// never a short object: io.ReadFull's answer for a short last part must
// not be confused with the source's own. In a small object and in the
// middle of a multipart one.
func TestUploadOfATruncatedSourceFails(t *testing.T) {
	for _, size := range []int{3 << 20, 12 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			var puts int
			var mu sync.Mutex
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				q := r.URL.Query()
				switch {
				case r.Method == http.MethodPost && q.Has("uploads"):
					fmt.Fprint(w, `<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>`)
				case r.Method == http.MethodPut:
					puts++
					_, _ = io.Copy(io.Discard, r.Body)
					w.Header().Set("ETag", `"e"`)
				case r.Method == http.MethodDelete:
					w.WriteHeader(http.StatusNoContent)
				case r.Method == http.MethodGet:
					fmt.Fprint(w, `<ListPartsResult></ListPartsResult>`)
				default:
					t.Errorf("unexpected %s %s", r.Method, r.URL)
				}
			}))
			defer srv.Close()
			r, err := New(Config{PartSize: 5 << 20, Attempts: 1})
			if err != nil {
				t.Fatal(err)
			}
			c, err := r.Client(Endpoint{URL: srv.URL, Region: "r", AccessKeyID: "a", SecretAccessKey: "s", PathStyle: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			res, err := c.Upload(context.Background(), "b", "k", truncatedSource(size), nil)
			if err == nil || !strings.Contains(err.Error(), "read source: unexpected EOF") {
				t.Fatalf("upload of a truncated source: %+v, %v; want it to fail", res, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if size < 5<<20 && puts != 0 {
				t.Errorf("%d PUTs of a truncated small object", puts)
			}
		})
	}
}
