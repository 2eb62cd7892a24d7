package pod

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/remote-build-nodes/rbn/internal/imageref"
)

// translator carries the input through the translation of one pod.
type translator struct {
	in  Input
	pod *corev1.Pod
	// missing is the first Secret or ConfigMap that env needs and lacks,
	// reported only when nothing permanent is wrong (see deferMissing).
	missing *MissingObjectError
	// invalidEnvKeys (deduplicated through invalidSeen) become Plan.InvalidEnvKeys.
	invalidEnvKeys []string
	invalidSeen    map[string]bool
	// usesPodIP becomes Plan.UsesPodIP.
	usesPodIP bool
	// warnings becomes Plan.Warnings.
	warnings []Warning
	// token is the pod's first serviceAccountToken projection and
	// tokenField its path: the runtime requests one token per pod.
	token      *corev1.ServiceAccountTokenProjection
	tokenField string
}

// Translate turns a pod bound to this node into the plan of its podman
// objects. It is pure: Secrets, ConfigMaps and the service account token come
// in through in, nothing is looked up.
//
// Container environments are resolved here, as the kubelet resolves them
// (envFrom, valueFrom, $(VAR) expansion), from in: see Input.PodIP for the
// one value that changes once the podman pod exists.
//
// Errors: *UnsupportedError for what rbn cannot honour (permanent: the pod
// should fail), *MissingObjectError for a Secret or ConfigMap that is not
// there yet (the kubelet retries those), ErrNoServiceAccountToken (wrapped)
// when the caller forgot the token. A pod with both permanent and missing-
// object problems reports a permanent one, so that it is not retried in vain;
// among missing objects, volumes' come before env's, as the kubelet mounts
// volumes before it builds a container's environment.
//
// Every field of the pod spec has a decision, listed in fields.go (and
// docs/podspec.md, rendered from it): implemented, refused here, ignored
// because it is settled before the pod reaches a node (scheduling, cluster
// DNS), or run without and reported in Plan.Warnings.
func Translate(in Input) (*Plan, error) {
	if in.Pod == nil {
		return nil, errors.New("translate: no pod")
	}
	if in.Pod.UID == "" {
		return nil, fmt.Errorf("translate pod %s/%s: no UID", in.Pod.Namespace, in.Pod.Name)
	}
	t := &translator{in: in, pod: in.Pod}
	if err := t.checkPod(); err != nil {
		return nil, err
	}
	pod := t.pod
	host, err := kernelHostname(pod, in.ClusterDomain)
	if err != nil {
		return nil, err
	}
	plan := &Plan{
		PodName:  PodName(pod.UID),
		Hostname: host,
		Network:  in.Network,
		Labels: map[string]string{
			LabelPodUID:       string(pod.UID),
			LabelPodNamespace: pod.Namespace,
			LabelPodName:      pod.Name,
			LabelNode:         in.NodeName,
		},
	}
	if err := t.sandbox(plan); err != nil {
		return nil, err
	}

	vols, err := t.volumes()
	if err != nil {
		return nil, err
	}
	if plan.Transfers, err = t.transfers(); err != nil {
		return nil, err
	}
	byName := make(map[string]*Volume, len(vols))
	for i := range vols {
		byName[vols[i].K8sName] = &vols[i]
	}

	for i := range pod.Spec.InitContainers {
		c, err := t.container(fmt.Sprintf("spec.initContainers[%d]", i), &pod.Spec.InitContainers[i], true, byName, plan)
		if err != nil {
			return nil, err
		}
		plan.InitContainers = append(plan.InitContainers, c)
	}
	for i := range pod.Spec.Containers {
		c, err := t.container(fmt.Sprintf("spec.containers[%d]", i), &pod.Spec.Containers[i], false, byName, plan)
		if err != nil {
			return nil, err
		}
		plan.Containers = append(plan.Containers, c)
	}
	for i := range pod.Spec.EphemeralContainers {
		ec := &pod.Spec.EphemeralContainers[i]
		spec := corev1.Container(ec.EphemeralContainerCommon)
		c, err := t.container(fmt.Sprintf("spec.ephemeralContainers[%d]", i), &spec, false, byName, plan)
		if err != nil {
			return nil, err
		}
		c.Ephemeral, c.TargetContainer = true, ec.TargetContainerName
		plan.EphemeralContainers = append(plan.EphemeralContainers, c)
	}

	// Files last: a missing Secret only delays a pod, so every permanent
	// refusal is found first.
	if err := t.fillFiles(vols); err != nil {
		return nil, err
	}
	if plan.Transfers != nil {
		if err := t.transfersSecretPresent(plan.Transfers); err != nil {
			return nil, err
		}
	}
	if t.missing != nil {
		return nil, t.missing
	}
	plan.Volumes = vols
	plan.InvalidEnvKeys = t.invalidEnvKeys
	plan.UsesPodIP = t.usesPodIP
	plan.Warnings = t.warnings
	return plan, nil
}

// hostname is the pod's hostname as the kubelet sets it: hostnameOverride,
// else spec.hostname, else the pod name, cut to a DNS label. The subdomain
// only matters to cluster DNS, which rbn pods do not use.
func hostname(pod *corev1.Pod) string {
	if pod.Spec.HostnameOverride != nil && *pod.Spec.HostnameOverride != "" {
		return truncateHostname(*pod.Spec.HostnameOverride)
	}
	if pod.Spec.Hostname != "" {
		return truncateHostname(pod.Spec.Hostname)
	}
	return truncateHostname(pod.Name)
}

// kernelHostname is the hostname the pod's containers see, as the kubelet
// sets it (GetNodenameForKernel): with setHostnameAsFQDN and a subdomain,
// hostname.subdomain.namespace.svc.<cluster domain>, which must fit the
// kernel's 64 bytes; else the pod's hostname.
func kernelHostname(pod *corev1.Pod, clusterDomain string) (string, error) {
	h := hostname(pod)
	fqdn := pod.Spec.SetHostnameAsFQDN != nil && *pod.Spec.SetHostnameAsFQDN
	if !fqdn || pod.Spec.Subdomain == "" {
		return h, nil
	}
	if clusterDomain == "" {
		return "", unsupported("spec.setHostnameAsFQDN", ReasonUnsupportedField,
			"setHostnameAsFQDN needs the cluster domain, and rbn-kubelet's configuration sets no clusterDomain")
	}
	name := h + "." + pod.Spec.Subdomain + "." + pod.Namespace + ".svc." + clusterDomain
	if len(name) > maxKernelHostname {
		return "", unsupported("spec.setHostnameAsFQDN", ReasonUnsupportedField,
			"failed to construct FQDN from pod hostname and cluster domain, FQDN %s is too long (%d characters is the max, %d characters requested)",
			name, maxKernelHostname, len(name))
	}
	return name, nil
}

// maxKernelHostname is Linux's limit on a hostname (HOST_NAME_MAX).
const maxKernelHostname = 64

// checkPod refuses the pod-level features rbn does not implement. Each of
// them changes what the containers can see or do, so running the pod without
// them would be running a different pod.
func (t *translator) checkPod() error {
	s := &t.pod.Spec
	field := func(name string) *UnsupportedError {
		return unsupported("spec."+name, ReasonUnsupportedField, "%s is not supported on remote build nodes", name)
	}
	switch {
	case len(s.Containers) == 0:
		return unsupported("spec.containers", ReasonInvalidSpec, "the pod has no containers")
	case s.HostNetwork:
		return field("hostNetwork")
	case s.HostPID:
		return field("hostPID")
	case s.HostIPC:
		return field("hostIPC")
	case s.OS != nil && s.OS.Name != corev1.Linux:
		return unsupported("spec.os.name", ReasonUnsupportedField, "os %q is not supported: build hosts run Linux", s.OS.Name)
	case s.HostUsers != nil && !*s.HostUsers:
		return unsupported("spec.hostUsers", ReasonUnsupportedField, "user namespaces (hostUsers: false) are not supported on remote build nodes")
	case len(s.ResourceClaims) > 0:
		return field("resourceClaims")
	}
	if err := checkContainerNames(s); err != nil {
		return err
	}
	if sc := s.SecurityContext; sc != nil {
		switch {
		case sc.FSGroupChangePolicy != nil && *sc.FSGroupChangePolicy != corev1.FSGroupChangeAlways &&
			*sc.FSGroupChangePolicy != corev1.FSGroupChangeOnRootMismatch:
			return unsupported("spec.securityContext.fsGroupChangePolicy", ReasonUnsupportedField,
				"fsGroupChangePolicy %q is not supported (only Always and OnRootMismatch)", *sc.FSGroupChangePolicy)
		case sc.SupplementalGroupsPolicy != nil && *sc.SupplementalGroupsPolicy != corev1.SupplementalGroupsPolicyMerge &&
			*sc.SupplementalGroupsPolicy != corev1.SupplementalGroupsPolicyStrict:
			return unsupported("spec.securityContext.supplementalGroupsPolicy", ReasonUnsupportedField,
				"supplementalGroupsPolicy %q is not supported (only Merge and Strict)", *sc.SupplementalGroupsPolicy)
		}
	}
	return nil
}

// checkContainerNames: API validation makes the names of a pod's init
// containers and containers distinct DNS labels. Checked again because
// each names its podman container (ContainerName): two containers of one
// name would be one podman container, and the runtime would track one
// as the other.
func checkContainerNames(s *corev1.PodSpec) error {
	seen := make(map[string]bool, len(s.InitContainers)+len(s.Containers))
	check := func(list string, cs []corev1.Container) error {
		for i := range cs {
			name, field := cs[i].Name, fmt.Sprintf("spec.%s[%d].name", list, i)
			if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
				return unsupported(field, ReasonInvalidSpec, "container name %q is invalid: %s", name, strings.Join(msgs, "; "))
			}
			if seen[name] {
				return unsupported(field, ReasonInvalidSpec, "container name %q is used twice", name)
			}
			seen[name] = true
		}
		return nil
	}
	if err := check("initContainers", s.InitContainers); err != nil {
		return err
	}
	return check("containers", s.Containers)
}

func (t *translator) container(field string, c *corev1.Container, init bool, vols map[string]*Volume, plan *Plan) (Container, error) {
	if err := checkContainer(field, c, init); err != nil {
		return Container{}, err
	}
	if c.Image == "" {
		return Container{}, unsupported(field+".image", ReasonInvalidImageName, "container %q has no image", c.Name)
	}
	image, err := imageref.Normalize(c.Image)
	if err != nil {
		return Container{}, unsupported(field+".image", ReasonInvalidImageName, "image %q: %v", c.Image, err)
	}
	out := Container{
		K8sName:    c.Name,
		Init:       init,
		Sidecar:    IsSidecar(c, init),
		StopSignal: stopSignal(c),
		Image:      image,
		PullPolicy: c.ImagePullPolicy,
		WorkingDir: c.WorkingDir,
		TTY:        c.TTY,
		Stdin:      c.Stdin,
		StdinOnce:  c.StdinOnce,
	}
	if p := c.TerminationMessagePath; p != "" {
		if !strings.HasPrefix(p, "/") {
			return Container{}, unsupported(field+".terminationMessagePath", ReasonInvalidSpec, "terminationMessagePath %q must be absolute", p)
		}
		out.TerminationMessagePath = p
		plan.TerminationVolume = TerminationVolumeName(t.pod.UID)
	}
	if out.PullPolicy == "" {
		out.PullPolicy = defaultPullPolicy(c.Image)
	}
	t.containerWarnings(field, c)

	if out.Env, err = t.env(field, c); err != nil {
		return Container{}, err
	}
	out.Entrypoint = expandAll(c.Command, out.Env)
	out.Command = expandAll(c.Args, out.Env)

	var podLimits corev1.ResourceList
	if r := t.pod.Spec.Resources; r != nil {
		podLimits = r.Limits
	}
	applyResources(&out, c.Resources, podLimits)
	if err := t.security(field, c, &out); err != nil {
		return Container{}, err
	}
	if out.Mounts, err = mounts(field, c.VolumeMounts, vols); err != nil {
		return Container{}, err
	}
	if !init {
		// As the kubelet, only app containers publish host ports.
		ports, err := hostPorts(field, c.Ports)
		if err != nil {
			return Container{}, err
		}
		plan.HostPorts = append(plan.HostPorts, ports...)
	}
	return out, nil
}

// containerWarnings lists what the container runs without (Plan.Warnings).
func (t *translator) containerWarnings(field string, c *corev1.Container) {
	for i, p := range c.Ports {
		if p.Protocol == corev1.ProtocolUDP || p.Protocol == corev1.ProtocolSCTP {
			t.warn(fmt.Sprintf("%s.ports[%d].protocol", field, i), WarningPortNotRelayed,
				"containerPort %d/%s of container %q is not reachable through Services: rbn-portal relays TCP only", p.ContainerPort, p.Protocol, c.Name)
		}
	}
	if c.StdinOnce {
		t.warn(field+".stdinOnce", WarningStdinOnce,
			"stdinOnce is not passed to podman, which has no such setting: whether stdin closes after the first attach is up to the host's podman")
	}
}

// warn adds a Plan warning.
func (t *translator) warn(field, reason, format string, args ...any) {
	t.warnings = append(t.warnings, Warning{Field: field, Reason: reason, Message: fmt.Sprintf(format, args...)})
}

// stopSignal is the container's lifecycle.stopSignal, "" for the image's.
func stopSignal(c *corev1.Container) string {
	if c.Lifecycle == nil || c.Lifecycle.StopSignal == nil {
		return ""
	}
	return string(*c.Lifecycle.StopSignal)
}

// Ended says whether a pod in phase has ended for good (Succeeded or
// Failed): none of its containers runs again.
func Ended(phase corev1.PodPhase) bool {
	return phase == corev1.PodSucceeded || phase == corev1.PodFailed
}

// IsSidecar says whether c, an init container when init, is a native
// sidecar: an init container with restartPolicy Always.
func IsSidecar(c *corev1.Container, init bool) bool {
	return init && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// checkContainer refuses the container features rbn does not implement.
func checkContainer(field string, c *corev1.Container, init bool) error {
	switch {
	case IsSidecar(c, init):
	case c.RestartPolicy != nil:
		return unsupported(field+".restartPolicy", ReasonUnsupportedField, "container restartPolicy %q is not supported", *c.RestartPolicy)
	case len(c.RestartPolicyRules) > 0:
		return unsupported(field+".restartPolicyRules", ReasonUnsupportedField, "container restartPolicyRules are not supported")
	case len(c.VolumeDevices) > 0:
		return unsupported(field+".volumeDevices", ReasonUnsupportedField, "volumeDevices are not supported")
	case len(c.Resources.Claims) > 0:
		return unsupported(field+".resources.claims", ReasonUnsupportedField, "resource claims are not supported")
	}
	if lc := c.Lifecycle; lc != nil {
		for _, h := range []struct {
			name    string
			handler *corev1.LifecycleHandler
		}{{"postStart", lc.PostStart}, {"preStop", lc.PreStop}} {
			// Refused here rather than failing at each start: kubelet
			// cannot run it either ("Cannot run handler").
			if h.handler != nil && h.handler.TCPSocket != nil {
				return unsupported(field+".lifecycle."+h.name+".tcpSocket", ReasonUnsupportedField, "a tcpSocket lifecycle handler is deprecated and not run by kubelet: use exec, httpGet or sleep")
			}
		}
		if lc.StopSignal != nil {
			if _, err := SignalNumber(string(*lc.StopSignal)); err != nil {
				return unsupported(field+".lifecycle.stopSignal", ReasonUnsupportedField, "%v", err)
			}
		}
	}
	return nil
}

// SignalNumber is the Linux number of a signal named as the API names them
// (SIGTERM, SIGRTMIN+3, SIGRTMAX-1).
func SignalNumber(name string) (syscall.Signal, error) {
	rt := func(base int, off string, sign int) (syscall.Signal, error) {
		n, err := strconv.Atoi(off)
		if err != nil || n < 0 || base+sign*n < sigRTMin || base+sign*n > sigRTMax {
			return 0, fmt.Errorf("unknown signal %q", name)
		}
		return syscall.Signal(base + sign*n), nil
	}
	switch {
	case name == "SIGRTMIN":
		return sigRTMin, nil
	case name == "SIGRTMAX":
		return sigRTMax, nil
	case strings.HasPrefix(name, "SIGRTMIN+"):
		return rt(sigRTMin, strings.TrimPrefix(name, "SIGRTMIN+"), 1)
	case strings.HasPrefix(name, "SIGRTMAX-"):
		return rt(sigRTMax, strings.TrimPrefix(name, "SIGRTMAX-"), -1)
	}
	if n := unix.SignalNum(name); n != 0 {
		return n, nil
	}
	return 0, fmt.Errorf("unknown signal %q", name)
}

// The real-time signals' range on Linux, as glibc exposes it (the
// kernel's 32 and 33 are taken by the C library's threads).
const (
	sigRTMin = 34
	sigRTMax = 64
)

// security applies the container's security context, with the pod's as the
// fallback for the fields both have.
func (t *translator) security(field string, c *corev1.Container, out *Container) error {
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	psc := t.pod.Spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	scField := field + ".securityContext"
	// pickField names, for an error, the field a value was taken from: the
	// container's when it sets one, else the pod's.
	pickField := func(containerSet bool, name string) string {
		if containerSet {
			return scField + "." + name
		}
		return "spec.securityContext." + name
	}

	out.Privileged = sc.Privileged != nil && *sc.Privileged
	out.ReadOnlyRootfs = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
	out.NoNewPrivileges = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
	if caps := sc.Capabilities; caps != nil {
		out.CapAdd = upperAll(caps.Add)
		out.CapDrop = upperAll(caps.Drop)
	}

	uid, gid := sc.RunAsUser, sc.RunAsGroup
	if uid == nil {
		uid = psc.RunAsUser
	}
	if gid == nil {
		gid = psc.RunAsGroup
	}
	switch {
	case uid != nil && gid != nil:
		out.User = strconv.FormatInt(*uid, 10) + ":" + strconv.FormatInt(*gid, 10)
	case uid != nil:
		out.User = strconv.FormatInt(*uid, 10)
	case gid != nil:
		// CRI refuses a group without a user too: the group would apply to
		// whatever user the image names, which nobody chose.
		return unsupported(pickField(sc.RunAsGroup != nil, "runAsGroup"), ReasonUnsupportedField, "runAsGroup without runAsUser is not supported")
	}

	if err := supplementalGroups(c.Name, psc, uid, gid, out); err != nil {
		return err
	}

	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = psc.RunAsNonRoot
	}
	if nonRoot != nil && *nonRoot {
		f := pickField(sc.RunAsNonRoot != nil, "runAsNonRoot")
		switch {
		case uid == nil:
			// The kubelet checks the image's USER before starting; the plan
			// is made before the image is pulled, so it cannot.
			return unsupported(f, ReasonUnsupportedField, "runAsNonRoot needs an explicit runAsUser on remote build nodes (the image's user is not checked)")
		case *uid == 0:
			return unsupported(f, ReasonCreateContainerConfigError, "container's runAsUser breaks non-root policy")
		}
	}

	if o := sc.SELinuxOptions; o != nil && *o != (corev1.SELinuxOptions{}) {
		return unsupported(scField+".seLinuxOptions", ReasonUnsupportedField, "seLinuxOptions are not supported")
	}
	if o := psc.SELinuxOptions; o != nil && *o != (corev1.SELinuxOptions{}) {
		return unsupported("spec.securityContext.seLinuxOptions", ReasonUnsupportedField, "seLinuxOptions are not supported")
	}
	if sc.ProcMount != nil && *sc.ProcMount != corev1.DefaultProcMount {
		return unsupported(scField+".procMount", ReasonUnsupportedField, "procMount %q is not supported", *sc.ProcMount)
	}
	// Only the runtime's default profiles are available: podman applies its
	// default seccomp and AppArmor profiles, which is what RuntimeDefault means.
	seccomp, seccompField := sc.SeccompProfile, scField+".seccompProfile"
	if seccomp == nil {
		seccomp, seccompField = psc.SeccompProfile, "spec.securityContext.seccompProfile"
	}
	if seccomp != nil && seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		return unsupported(seccompField, ReasonUnsupportedField, "seccomp profile %q is not supported (only RuntimeDefault)", seccomp.Type)
	}
	apparmor, apparmorField := sc.AppArmorProfile, scField+".appArmorProfile"
	if apparmor == nil {
		apparmor, apparmorField = psc.AppArmorProfile, "spec.securityContext.appArmorProfile"
	}
	if apparmor != nil && apparmor.Type != corev1.AppArmorProfileTypeRuntimeDefault {
		return unsupported(apparmorField, ReasonUnsupportedField, "AppArmor profile %q is not supported (only RuntimeDefault)", apparmor.Type)
	}
	return nil
}

// supplementalGroups gives the container the pod's fsGroup and supplementalGroups, on
// top of its user's memberships in the image's /etc/group (policy Merge),
// or instead of them (Strict). podman looks those memberships up only for
// a user given without a group, so Strict needs the container's runAsUser
// and runAsGroup both (the image's /etc/passwd, which would name the
// primary group, is not read), and Merge with a runAsGroup gets none of
// them: the same groups as Strict.
func supplementalGroups(container string, psc *corev1.PodSecurityContext, uid, gid *int64, out *Container) error {
	if p := psc.SupplementalGroupsPolicy; p != nil && *p == corev1.SupplementalGroupsPolicyStrict && (uid == nil || gid == nil) {
		return unsupported("spec.securityContext.supplementalGroupsPolicy", ReasonUnsupportedField,
			"supplementalGroupsPolicy Strict needs runAsUser and runAsGroup on remote build nodes (container %q lacks one): "+
				"podman adds the image's /etc/group memberships of a user given without a group", container)
	}
	// fsGroup first, as the kubelet lists it (determineEffectiveSecurityContext).
	if psc.FSGroup != nil {
		out.Groups = append(out.Groups, *psc.FSGroup)
	}
	out.Groups = append(out.Groups, psc.SupplementalGroups...)
	return nil
}

func upperAll[T ~string](in []T) []string {
	if len(in) == 0 {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.ToUpper(string(s))
	}
	return out
}

// mounts translates volumeMounts. Files volumes (secret, configMap,
// downwardAPI, projected) are always mounted read-only, as the kubelet does:
// they are the loader's to write, and a container writing there would be
// overwriting data the API owns.
func mounts(field string, vms []corev1.VolumeMount, vols map[string]*Volume) ([]Mount, error) {
	if len(vms) == 0 {
		return nil, nil
	}
	out := make([]Mount, 0, len(vms))
	for j, m := range vms {
		f := fmt.Sprintf("%s.volumeMounts[%d]", field, j)
		vol, ok := vols[m.Name]
		switch {
		case !ok:
			return nil, unsupported(f+".name", ReasonInvalidSpec, "volumeMount names volume %q, which the pod does not declare", m.Name)
		case m.SubPathExpr != "":
			return nil, unsupported(f+".subPathExpr", ReasonUnsupportedField, "subPathExpr is not supported")
		case m.MountPropagation != nil && *m.MountPropagation != corev1.MountPropagationNone:
			return nil, unsupported(f+".mountPropagation", ReasonUnsupportedField, "mountPropagation %q is not supported (only None)", *m.MountPropagation)
		case m.RecursiveReadOnly != nil && *m.RecursiveReadOnly == corev1.RecursiveReadOnlyEnabled:
			// IfPossible is honoured as a plain read-only mount, which is what
			// it allows when the runtime cannot do better; Enabled is a promise.
			return nil, unsupported(f+".recursiveReadOnly", ReasonUnsupportedField, "recursiveReadOnly: Enabled is not supported (podman 4.3 has no recursive read-only mounts)")
		case len(m.BindMountOptions) > 0:
			return nil, unsupported(f+".bindMountOptions", ReasonUnsupportedField, "bindMountOptions are not supported")
		case !strings.HasPrefix(m.MountPath, "/"):
			return nil, unsupported(f+".mountPath", ReasonInvalidSpec, "mountPath %q must be absolute", m.MountPath)
		}
		sub, err := cleanSubPath(m.SubPath)
		if err != nil {
			return nil, unsupported(f+".subPath", ReasonInvalidSpec, "%v", err)
		}
		out = append(out, Mount{
			Volume:    m.Name,
			MountPath: m.MountPath,
			SubPath:   sub,
			ReadOnly:  m.ReadOnly || vol.Kind == VolumeFiles || vol.ReadOnly,
		})
	}
	return out, nil
}

// hostPorts collects the ports a container publishes on the host; ports
// without hostPort only matter inside the pod network and need nothing.
func hostPorts(field string, ports []corev1.ContainerPort) ([]HostPort, error) {
	var out []HostPort
	for k, p := range ports {
		if p.HostPort == 0 {
			continue
		}
		proto := strings.ToLower(string(p.Protocol))
		switch proto {
		case "":
			proto = "tcp"
		case "tcp", "udp":
		default:
			return nil, unsupported(fmt.Sprintf("%s.ports[%d].protocol", field, k), ReasonUnsupportedField,
				"hostPort protocol %q is not supported (only TCP and UDP)", p.Protocol)
		}
		out = append(out, HostPort{ContainerPort: p.ContainerPort, HostPort: p.HostPort, HostIP: p.HostIP, Protocol: proto})
	}
	return out, nil
}
