package provider

import (
	"encoding/base64"
	"encoding/json"
	"strings"

	"go.podman.io/image/v5/docker/reference"
	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/internal/podman"
)

// pullCredentials finds credentials for image's registry among the pod's
// imagePullSecrets (kubernetes.io/dockerconfigjson or dockercfg), as kubelet
// does: the first secret with an entry for the registry wins.
func pullCredentials(image string, secrets []*corev1.Secret) *podman.Credentials {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return nil
	}
	domain := reference.Domain(named)
	for _, s := range secrets {
		var auths map[string]dockerAuth
		switch s.Type {
		case corev1.SecretTypeDockerConfigJson:
			var cfg struct {
				Auths map[string]dockerAuth `json:"auths"`
			}
			if json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg) != nil {
				continue
			}
			auths = cfg.Auths
		case corev1.SecretTypeDockercfg:
			if json.Unmarshal(s.Data[corev1.DockerConfigKey], &auths) != nil {
				continue
			}
		default:
			continue
		}
		for host, a := range auths {
			if registryHost(host) != domain && !(domain == "docker.io" && registryHost(host) == "index.docker.io") {
				continue
			}
			if c := a.credentials(); c != nil {
				return c
			}
		}
	}
	return nil
}

type dockerAuth struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Auth     string `json:"auth"`
}

func (a dockerAuth) credentials() *podman.Credentials {
	if a.Username != "" || a.Password != "" {
		return &podman.Credentials{Username: a.Username, Password: a.Password}
	}
	raw, err := base64.StdEncoding.DecodeString(a.Auth)
	if err != nil {
		return nil
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return nil
	}
	return &podman.Credentials{Username: user, Password: pass}
}

// registryHost reduces a config key ("https://reg:5000/v1/", "reg:5000") to its host.
func registryHost(key string) string {
	key = strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	host, _, _ := strings.Cut(key, "/")
	return host
}
