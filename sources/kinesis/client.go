package kinesis

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
)

// ClientConfig says how to reach Kinesis.
type ClientConfig struct {
	// Region is the AWS region; default: the SDK's (AWS_REGION, the shared
	// config), else us-east-1.
	Region string
	// Endpoint replaces the service endpoint (kinesalite, LocalStack);
	// default: the region's. With an endpoint set, the EC2 instance
	// metadata service is not asked for credentials (an emulator does not
	// check them, and off EC2 the lookup only adds delay).
	Endpoint string
	// Credentials, if set, replaces the SDK's default credential chain
	// (environment, shared files, SSO, web identity, ECS, EC2) — tests use
	// static fake credentials for kinesalite.
	Credentials aws.CredentialsProvider
}

// NewClient returns a Kinesis client with the SDK's default configuration
// chain, cfg applied on top. It does not connect.
func NewClient(ctx context.Context, cfg ClientConfig) (*kinesis.Client, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithRetryMaxAttempts(3),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.Endpoint != "" {
		opts = append(opts, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	if cfg.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
	}
	ac, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("kinesis: loading the AWS configuration: %w", err)
	}
	if ac.Region == "" {
		ac.Region = "us-east-1"
	}
	return kinesis.NewFromConfig(ac, func(o *kinesis.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		// A GetRecords long enough to return 10 MB still answers well
		// within this.
		o.HTTPClient = awsHTTPClient(30 * time.Second)
	}), nil
}

// StaticCredentials returns fixed credentials, for emulators.
func StaticCredentials(id, secret string) aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(id, secret, "")
}
