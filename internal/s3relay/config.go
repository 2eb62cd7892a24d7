package s3relay

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/remote-build-nodes/rbn/internal/egress"
)

// Endpoint says where an S3 service is and how to authenticate to it.
type Endpoint struct {
	// URL is the service's base URL (http or https); empty: AWS for Region.
	URL    string
	Region string
	// AccessKeyID and SecretAccessKey (and SessionToken for temporary
	// credentials) sign every request.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// CABundle (PEM) replaces the system roots for an https URL.
	CABundle []byte
	// PathStyle addresses buckets as URL/bucket/key instead of bucket.host/key.
	PathStyle bool
}

// Validate reports what makes the endpoint unusable.
func (e *Endpoint) Validate() error {
	var errs []error
	if e.URL != "" {
		u, err := url.Parse(e.URL)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("endpoint: %w", err))
		case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
			errs = append(errs, fmt.Errorf("endpoint %q: want http(s)://host[:port]", e.URL))
		}
	}
	if e.Region == "" {
		errs = append(errs, errors.New("region is empty"))
	}
	if e.AccessKeyID == "" || e.SecretAccessKey == "" {
		errs = append(errs, errors.New("access key ID and secret access key are required"))
	}
	if len(e.CABundle) > 0 && !x509.NewCertPool().AppendCertsFromPEM(e.CABundle) {
		errs = append(errs, errors.New("CA bundle holds no PEM certificate"))
	}
	return errors.Join(errs...)
}

// newS3Client builds an SDK client for e. It reads nothing from the process
// environment or the local AWS files: the credentials are e's alone. Every
// connection it makes, redirects included, passes policy (nil: none).
func newS3Client(e *Endpoint, maxAttempts int, policy *egress.Policy) (*s3.Client, *http.Transport, error) {
	if err := e.Validate(); err != nil {
		return nil, nil, err
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if policy != nil {
		dialer = policy.Dialer(*dialer)
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   16,
		ForceAttemptHTTP2:     true,
	}
	if len(e.CABundle) > 0 {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(e.CABundle)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	opts := s3.Options{
		Region:       e.Region,
		Credentials:  aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(e.AccessKeyID, e.SecretAccessKey, e.SessionToken)),
		HTTPClient:   &http.Client{Transport: tr},
		UsePathStyle: e.PathStyle,
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = maxAttempts
			// A refused address stays refused: the SDK would retry it as a
			// connection error.
			o.Retryables = append([]retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
				var d *egress.DeniedError
				if errors.As(err, &d) {
					return aws.FalseTernary
				}
				return aws.UnknownTernary
			})}, o.Retryables...)
		}),
		// Checksums are computed here and sent as headers (see upload.go);
		// the SDK's default streaming CRC trailer is not understood by
		// every S3 server, so it is only used where an operation requires it.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	if e.URL != "" {
		opts.BaseEndpoint = aws.String(e.URL)
	}
	return s3.New(opts), tr, nil
}
