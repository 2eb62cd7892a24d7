package framework

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3Env is the S3 server hack/s3.sh runs beside the stack (`hack/s3.sh env`
// prints these variables).
type S3Env struct {
	Endpoint, Region, AccessKey, SecretKey string
}

// S3EnvFromOS reads S3Env from RBN_S3_*; the error names the first variable
// that is not set.
func S3EnvFromOS() (S3Env, error) {
	var e S3Env
	for _, v := range []struct {
		key string
		dst *string
	}{{"RBN_S3_ENDPOINT", &e.Endpoint}, {"RBN_S3_REGION", &e.Region}, {"RBN_S3_ACCESS_KEY", &e.AccessKey}, {"RBN_S3_SECRET_KEY", &e.SecretKey}} {
		val, err := Getenv(v.key)
		if err != nil {
			return S3Env{}, err
		}
		*v.dst = val
	}
	return e, nil
}

// Client is an S3 client of the server of its own, independent of rbn's, to
// set up and check objects.
func (e S3Env) Client() *s3.Client {
	return s3.New(s3.Options{
		Region: e.Region, BaseEndpoint: aws.String(e.Endpoint), UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(e.AccessKey, e.SecretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// CreateBucket creates a bucket (rbn's s3relay only moves objects).
func (e S3Env) CreateBucket(ctx context.Context, name string) error {
	if _, err := e.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	return nil
}
