package pod

// What rbn does with every field of a pod spec, one row per field, keyed by
// its JSON path. The fields of a container are listed once, under
// spec.containers[]; they hold for spec.initContainers[] too. TestFieldTable
// walks the API types and fails on a field without a row (a field a newer
// Kubernetes adds must be decided on, not dropped) and on a row that names
// no field; docs/podspec.md is rendered from this table.
//
// A row's handling is what a pod that sets the field gets:
//   - Implemented: done as the kubelet does it (values rbn cannot do are
//     refused, and the row says which);
//   - Refused: the pod fails with the reason (an UnsupportedError), before
//     anything is created on the host;
//   - Ignored: not a node's business (the scheduler's, the API server's,
//     cluster DNS's), so the kubelet would not act on it either, or only in
//     ways that cannot apply to a build host; the row says why;
//   - Warned: the pod runs without it, and a Warning event says so.
//
// Changes to a running pod that the API allows and rbn does not apply get a
// Warning event too (UnappliedChanges).

// Handling is what rbn does with a field.
type Handling string

const (
	Implemented Handling = "implemented"
	Refused     Handling = "refused"
	Ignored     Handling = "ignored"
	Warned      Handling = "warned"
)

// FieldDecision is one row of the table.
type FieldDecision struct {
	// Path is the field's JSON path: spec.containers[].livenessProbe.
	Path     string
	Handling Handling
	// Why says what rbn does and why: for a refused field, the reason the
	// pod gets; for an ignored one, why it does not matter on a node.
	Why string
}

const (
	whyScheduler = "The scheduler's: settled before the pod is bound to the node."
	whyFileOwner = "Refused (UnsupportedVolume): files are written owned by root; choosing their owner is not implemented."
)

// Fields is the table, grouped as docs/podspec.md shows it.
var Fields = append([]FieldDecision{
	// PodSpec.
	{"spec.volumes", Implemented, "Each volume as its source says (spec.volumes[] below)."},
	{"spec.initContainers", Implemented, "Run one at a time, in order, each to completion, before the app containers, with the kubelet's restart rules."},
	{"spec.containers", Implemented, "Run together in one podman pod (shared network, IPC and UTS namespaces). A pod without containers is refused (InvalidSpec)."},
	{"spec.ephemeralContainers", Implemented, "Each debug container added to the running pod (kubectl debug) is pulled, created in the pod (its network, IPC and UTS namespaces) and started once, never restarted, as kubelet does; its status is in status.ephemeralContainerStatuses; logs, exec and attach reach it."},
	{"spec.restartPolicy", Implemented, "Always, OnFailure, Never, with the kubelet's crash-loop back-off (10 s doubling to 5 min)."},
	{"spec.terminationGracePeriodSeconds", Implemented, "The grace period of a deletion that does not set its own. It ends at the pod's deletionTimestamp: a pod deleted while no rbn-kubelet served its node gets what is left of it (at least 2 s) once the node is served again."},
	{"spec.activeDeadlineSeconds", Implemented, "Counted from the pod's startTime, as by the kubelet: past it, the running containers are stopped within the pod's grace period and the pod fails with DeadlineExceeded (and a Warning event of that reason). Applied to running pods too when it is set or lowered."},
	{"spec.dnsPolicy", Implemented, "Default: the build host's resolvers, as podman gives them to a pod (the host's /etc/resolv.conf, or the upstream servers of its systemd-resolved or NetworkManager stub resolver, without loopback nameservers). ClusterFirst and ClusterFirstWithHostNet get the same, as on a kubelet without clusterDNS: cluster DNS is not reachable from a build host outside the cluster network (hostNetwork is refused, so ClusterFirstWithHostNet is ClusterFirst). None: the pod's resolv.conf is its dnsConfig and nothing else (without one, the host's, as containerd copies it for the kubelet's empty configuration)."},
	{"spec.nodeSelector", Ignored, whyScheduler},
	{"spec.serviceAccountName", Implemented, "The account of the projected service account token (TokenRequest) and of the downward API's spec.serviceAccountName."},
	{"spec.serviceAccount", Ignored, "Deprecated alias of serviceAccountName, which the API server keeps in step."},
	{"spec.automountServiceAccountToken", Ignored, "The API server's ServiceAccount admission acts on it, adding (or not) the projected token volume, which rbn then mounts; the kubelet does not read it either."},
	{"spec.nodeName", Ignored, "Set by the scheduler: rbn runs the pods bound to its node (the downward API's spec.nodeName reads it)."},
	{"spec.hostNetwork", Refused, "Refused (UnsupportedField): pods get their own network namespace on the host."},
	{"spec.hostPID", Refused, "Refused (UnsupportedField)."},
	{"spec.hostIPC", Refused, "Refused (UnsupportedField)."},
	{"spec.shareProcessNamespace", Implemented, "true: the podman pod shares its PID namespace too; its infra container's pause process (catatonit) is PID 1 and sees every container's processes, as the kubelet's sandbox does."},
	{"spec.securityContext", Implemented, "Field by field below (spec.securityContext.*)."},
	{"spec.imagePullSecrets", Implemented, "Used to pull the pod's images, on the host or through rbn-kubelet (imagePull: ThroughKubelet)."},
	{"spec.hostname", Implemented, "The containers' hostname (cut to 63 bytes as the kubelet does)."},
	{"spec.subdomain", Ignored, "Only names the pod in cluster DNS, which rbn pods do not use."},
	{"spec.affinity", Ignored, whyScheduler},
	{"spec.schedulerName", Ignored, whyScheduler},
	{"spec.tolerations", Ignored, whyScheduler + " (NoExecute taints are enforced by the controller manager, not the node.)"},
	{"spec.hostAliases", Implemented, "Entries in the pod's /etc/hosts (podman's host entries, one per hostname, in the pod's order). podman writes them above its own entries (localhost, the pod's hostname) where the kubelet writes them below, so an alias for one of those names wins on rbn. An IP or hostname the API would not accept is refused (InvalidSpec)."},
	{"spec.priorityClassName", Ignored, whyScheduler},
	{"spec.priority", Ignored, whyScheduler + " The kubelet also uses it to order evictions; rbn evicts nothing."},
	{"spec.dnsConfig", Implemented, "As the kubelet forms the pod's resolv.conf: with dnsPolicy None, exactly its nameservers, searches and options; with the other policies, merged onto the build host's resolvers (read over SSH when the pod starts, as podman reads them for a pod): nameservers and searches appended without duplicates, options merged with the pod's value winning for a name the host has (in the host's order, then the pod's; the kubelet's order is random). Then the kubelet's limits: at most 3 nameservers, searches cut to 32 domains of at most 253 characters and 2048 characters in all, each cut a Warning event DNSConfigForming with the kubelet's message. The result is given to podman whole (the podman pod's DNS servers, searches and options), so the host's containers.conf dns_servers, dns_searches and dns_options, which podman adds before the pod's, are the only other source. The host's nameservers are those podman gives a pod without dnsConfig, but for its IPv6 ones, which are kept (podman drops them for a pod without IPv6; the kubelet keeps them). If the host has no nameserver a pod can reach and the pod adds none, podman's fallback (8.8.8.8, 8.8.4.4) is kept. A nameserver that is not an IP is refused (InvalidSpec)."},
	{"spec.readinessGates", Implemented, "Ready is True only once the containers are ready and every gate's condition is True, as on a kubelet (else Ready False, reason ReadinessGatesNotReady, kubelet's message). The conditions other controllers set are read from the API and written back with rbn's own, which virtual-kubelet writes whole."},
	{"spec.runtimeClassName", Implemented, "The RuntimeClass (node.k8s.io/v1) is read when the pod starts; its handler names the OCI runtime of every container of the pod (the infra container keeps podman's default: a podman pod's cannot be chosen). A handler the host's podman does not have fails the pod (RuntimeHandlerNotFound); a RuntimeClass that does not exist keeps the pod waiting with FailedCreatePodSandBox events, as on a kubelet. The node's status.runtimeHandlers lists the host's runtimes: podman reports only its default one."},
	{"spec.enableServiceLinks", Ignored, "Service variables (FOO_SERVICE_HOST, KUBERNETES_SERVICE_HOST, ...) are never injected: cluster IPs are not reachable from a build host."},
	{"spec.preemptionPolicy", Ignored, whyScheduler},
	{"spec.overhead", Ignored, whyScheduler + " The kubelet adds it to the pod cgroup's limits; rbn's pod cgroup gets spec.resources only (the RuntimeClass's overhead is not added)."},
	{"spec.topologySpreadConstraints", Ignored, whyScheduler},
	{"spec.setHostnameAsFQDN", Implemented, "As on a kubelet: with a subdomain, the containers' hostname is hostname.subdomain.namespace.svc.<clusterDomain> (rbn-kubelet's configuration, default cluster.local); a name over the kernel's 64 characters fails the pod (UnsupportedField) with kubelet's message. Without a subdomain, the hostname stays the pod's. The name resolves in the pod's own /etc/hosts, not through cluster DNS, which build hosts do not use."},
	{"spec.os", Implemented, "linux runs; any other OS is refused (UnsupportedField): build hosts run Linux."},
	{"spec.hostUsers", Implemented, "true (the default) is what rbn does; false (user namespaces) is refused (UnsupportedField)."},
	{"spec.schedulingGates", Ignored, whyScheduler},
	{"spec.resourceClaims", Refused, "Refused (UnsupportedField): dynamic resource allocation is not supported."},
	{"spec.resources", Implemented, "Pod-level resources, as the kubelet applies them to the pod cgroup: limits.memory and limits.cpu bound the podman pod's cgroup (podman's pod resource limits; every container of the pod runs below it), requests.cpu gives it its CPU shares; a container without a cpu or memory limit of its own gets the pod's in its cgroup (the kubelet's getCPULimit and getMemoryLimit) and in the downward API (resourceFieldRef), and a Memory emptyDir is bounded by the pod's memory limit. Other resources (hugepages) are refused (UnsupportedField). podman only creates a pod cgroup when it runs as root (cgroupfs or systemd, cgroup v1 or v2): on a host whose podman runs rootless the limits would be dropped silently, so such a pod is refused there (UnsupportedField)."},
	{"spec.hostnameOverride", Implemented, "Wins over hostname and the pod name, as for the kubelet."},
	{"spec.schedulingGroup", Ignored, whyScheduler},
	{"spec.evictionResponders", Ignored, "Read by the Eviction API's controllers, not by the node."},
	{"spec.os.name", Implemented, "linux runs; any other OS is refused (UnsupportedField)."},

	// PodSecurityContext.
	{"spec.securityContext.seLinuxOptions", Refused, "Refused (UnsupportedField) when set."},
	{"spec.securityContext.windowsOptions", Ignored, "Windows only; the kubelet on Linux ignores it too."},
	{"spec.securityContext.runAsUser", Implemented, "The default of every container's runAsUser."},
	{"spec.securityContext.runAsGroup", Implemented, "The default of every container's runAsGroup; without a runAsUser it is refused (UnsupportedField)."},
	{"spec.securityContext.runAsNonRoot", Implemented, "Needs an explicit runAsUser (the image's USER is not checked): refused (UnsupportedField) without one, and a runAsUser of 0 fails the pod (CreateContainerConfigError)."},
	{"spec.securityContext.supplementalGroups", Implemented, "Supplemental groups of every container (podman's additional groups), added to the user's memberships in the image's /etc/group as supplementalGroupsPolicy says."},
	{"spec.securityContext.supplementalGroupsPolicy", Implemented, "Merge (the default): the user's memberships in the image's /etc/group are kept, as on a kubelet, but only for a container without runAsGroup: podman looks them up only for a user given without a group, so with one the container gets what Strict gives. Strict: only runAsGroup and supplementalGroups; it needs runAsUser and runAsGroup on every container (refused, UnsupportedField, otherwise: the image's /etc/passwd is not read for the primary group)."},
	{"spec.securityContext.fsGroup", Implemented, "As the kubelet's SetVolumeOwnership: every container has the group as a supplemental group (first, before supplementalGroups); emptyDir volumes are created group-owned by it (podman's gid volume option, which also keeps podman from chowning the volume to the first container's user), their root setgid and writable by all (2777, the kubelet's emptyDir root with its setgid bit; on disk set with chmod on the host over the node's SSH connection, on a Memory emptyDir as tmpfs options); the files of secret, configMap, downwardAPI and projected volumes are written with the group, readable by owner and group (mode |0440), their directories setgid (2755). hostPath volumes are left as they are. Differences: the root directory of a secret-like volume stays podman's (root, 0755, traversable by all); and the ownership is applied once, when the pod's volumes are set up (an emptyDir is empty then), not again when rbn-kubelet restarts: what the containers create later inherits the group through the setgid bit, as on a kubelet; files podman copies up from the image into an emptyDir at its first mount (the kubelet copies nothing) keep the image's owner."},
	{"spec.securityContext.sysctls", Implemented, "Set on the podman pod (its infra container), in the network and IPC namespaces every container shares. The kubelet's safe sysctls are allowed (kernel.shm_rmid_forced, net.ipv4.ip_local_port_range, ip_unprivileged_port_start, ip_local_reserved_ports, ping_group_range, tcp_syncookies, tcp_keepalive_time, tcp_keepalive_intvl, tcp_keepalive_probes, tcp_fin_timeout, tcp_rmem, tcp_wmem); others only when the RemoteBuildNode's allowedUnsafeSysctls names them (the kubelet's --allowed-unsafe-sysctls); any other fails the pod (SysctlForbidden), as on a kubelet. Names with '/' are read as the kubelet reads them."},
	{"spec.securityContext.fsGroupChangePolicy", Implemented, "Always and OnRootMismatch are accepted and act the same: rbn applies fsGroup to volumes it has just created (an emptyDir is empty, a secret-like volume is being written), where walking the volume and checking its root first give the same result. Another value is refused (UnsupportedField)."},
	{"spec.securityContext.seccompProfile", Implemented, "RuntimeDefault (podman's default profile); other types are refused (UnsupportedField)."},
	{"spec.securityContext.appArmorProfile", Implemented, "RuntimeDefault (podman's default profile); other types are refused (UnsupportedField)."},
	{"spec.securityContext.seLinuxChangePolicy", Ignored, "Only says how volumes are relabelled for seLinuxOptions, which are refused; rbn relabels nothing."},

	// Container (and init container).
	{"spec.containers[].name", Implemented, "Names the podman container rbn-<pod UID>-<name>-<restart count>."},
	{"spec.containers[].image", Implemented, "Pulled per imagePullPolicy; an unparsable reference is refused (InvalidImageName). Taken when the pod starts: an image changed on a running pod is not applied (SpecChangeIgnored event)."},
	{"spec.containers[].command", Implemented, "Replaces the image's ENTRYPOINT, with $(VAR) expansion."},
	{"spec.containers[].args", Implemented, "Replaces the image's CMD, with $(VAR) expansion."},
	{"spec.containers[].workingDir", Implemented, "Created when missing, as container runtimes under Kubernetes do."},
	{"spec.containers[].ports", Implemented, "Ports with a hostPort are published on the host (app containers only, as for the kubelet); the others need nothing: the pod's containers share a network namespace."},
	{"spec.containers[].envFrom", Implemented, "ConfigMaps and Secrets, with prefix; invalid names are skipped with an InvalidEnvironmentVariableNames event."},
	{"spec.containers[].env", Implemented, "value with $(VAR) expansion, and valueFrom (below)."},
	{"spec.containers[].resources", Implemented, "limits.cpu and limits.memory as cgroup limits, requests.cpu as CPU shares, as the kubelet computes them (below)."},
	{"spec.containers[].resizePolicy", Ignored, "Only says how an in-place resize is applied, and resources are applied when the pod starts: a resize of a running pod is not applied (SpecChangeIgnored event)."},
	{"spec.containers[].restartPolicy", Implemented, "Always on an init container makes it a native sidecar, run as kubelet runs one: started in order (the next init container waits until it is started, after its startup probe if it has one), restarted whenever it exits whatever the pod's policy, not waited for at completion, stopped after the app containers (in reverse order) when they have ended or the pod is deleted. Refused (UnsupportedField) on app containers."},
	{"spec.containers[].restartPolicyRules", Refused, "Refused (UnsupportedField)."},
	{"spec.containers[].volumeMounts", Implemented, "Below (spec.containers[].volumeMounts[].*)."},
	{"spec.containers[].volumeDevices", Refused, "Refused (UnsupportedField): no block volumes."},
	{"spec.containers[].livenessProbe", Implemented, "Run by rbn-kubelet as kubelet runs it (exec in the container; httpGet, tcpSocket and grpc from the build host to the pod's IP over the node's SSH connection): after failureThreshold failures the container is killed within the probe's terminationGracePeriodSeconds, or else the pod's, and restarted unless the restart policy is Never, with kubelet's Unhealthy and Killing events. An exec probe's timeoutSeconds bounds the command from its start in the container: podman's setup of the exec session (hundreds of ms on a busy host) is not counted."},
	{"spec.containers[].readinessProbe", Implemented, "Run as kubelet runs it: the container's ready, and the pod's ContainersReady and Ready conditions (and so Service endpoints), follow its result; not ready until its first success. An attempt that could not be made because rbn's SSH connection to the host is down is thrown away, as kubelet throws away an attempt its prober could not make: a cut of that connection does not turn the pod NotReady."},
	{"spec.containers[].startupProbe", Implemented, "Run as kubelet runs it: the container is not started, and its liveness and readiness probes wait, until it succeeds; failureThreshold failures kill the container as a liveness failure does."},
	{"spec.containers[].lifecycle", Implemented, "postStart and preStop hooks with the exec, httpGet (from the build host to the pod's IP) and sleep handlers, run by rbn-kubelet as kubelet runs them: postStart right after the start, a failure (FailedPostStartHook) killing the container; preStop before every stop (deletion, failed liveness probe, deadline, completed sidecars) within the grace period, SIGTERM after it with at least 2 s left. stopSignal is the container's stop signal on the host. A tcpSocket handler is refused (UnsupportedField), as kubelet cannot run it."},
	{"spec.containers[].terminationMessagePath", Implemented, "Every run of the container gets a new empty file, world-writable (mode 0666) as the kubelet's, in a podman volume of the pod (created on the host over the node's SSH connection before the container), bind-mounted at the path; when the run has ended, the last 4096 bytes of it are its terminated state's message, read once on the host over the same connection (tail, which seeks to the end as the kubelet does). A new run never reports the message of the one before. As the kubelet, messages are cut so that a pod's fit in 12 KiB (12 KiB divided by the number of init and app containers, per message). A relative path is refused (InvalidSpec)."},
	{"spec.containers[].terminationMessagePolicy", Implemented, "File (the default): the message is what the run wrote to terminationMessagePath. FallbackToLogsOnError: that file when it is not empty, else, for a failed run, the tail of its logs (last 80 lines, at most 2048 bytes), as for the kubelet."},
	{"spec.containers[].imagePullPolicy", Implemented, "Always, IfNotPresent, Never; defaulted from the tag as the API server does when unset."},
	{"spec.containers[].securityContext", Implemented, "Field by field below (spec.containers[].securityContext.*)."},
	{"spec.containers[].stdin", Implemented, "Keeps stdin open for kubectl attach."},
	{"spec.containers[].stdinOnce", Warned, "Podman has no such setting (StdinOnceIgnored event): whether stdin closes after the first attach is up to the host's podman."},
	{"spec.containers[].tty", Implemented, "Allocates a terminal (kubectl attach/exec -t, and logs read accordingly)."},

	{"spec.containers[].ports[].name", Ignored, "Names the port for Services and probes; nothing to do on the host."},
	{"spec.containers[].ports[].hostPort", Implemented, "Published on the host (app containers only)."},
	{"spec.containers[].ports[].containerPort", Implemented, "The target of a hostPort."},
	{"spec.containers[].ports[].protocol", Implemented, "TCP and UDP; SCTP with a hostPort is refused (UnsupportedField). Services reach TCP ports only (rbn-portal): a UDP or SCTP port gets a PortNotRelayed Warning event."},
	{"spec.containers[].ports[].hostIP", Implemented, "The host address a hostPort is published on."},

	{"spec.containers[].envFrom[].prefix", Implemented, "Prepended to every key."},
	{"spec.containers[].envFrom[].configMapRef", Implemented, "A missing ConfigMap keeps the pod waiting (CreateContainerConfigError) unless optional."},
	{"spec.containers[].envFrom[].secretRef", Implemented, "A missing Secret keeps the pod waiting (CreateContainerConfigError) unless optional."},

	{"spec.containers[].env[].name", Implemented, "As the API allows (printable ASCII but '=')."},
	{"spec.containers[].env[].value", Implemented, "With $(VAR) expansion against the variables defined before it."},
	{"spec.containers[].env[].valueFrom", Implemented, "Below (spec.containers[].env[].valueFrom.*)."},
	{"spec.containers[].env[].valueFrom.fieldRef", Implemented, "metadata.name, namespace, uid, labels, annotations (whole or one key), spec.nodeName, spec.serviceAccountName, status.podIP(s), status.hostIP(s); others are refused (UnsupportedField)."},
	{"spec.containers[].env[].valueFrom.resourceFieldRef", Implemented, "limits and requests of cpu, memory and ephemeral-storage, with divisor; a cpu or memory limit the container does not set is the pod-level limit (spec.resources) when the pod sets one, else the node's allocatable, as for the kubelet."},
	{"spec.containers[].env[].valueFrom.configMapKeyRef", Implemented, "A missing ConfigMap or key keeps the pod waiting (CreateContainerConfigError) unless optional."},
	{"spec.containers[].env[].valueFrom.secretKeyRef", Implemented, "A missing Secret or key keeps the pod waiting (CreateContainerConfigError) unless optional."},
	{"spec.containers[].env[].valueFrom.fileKeyRef", Refused, "Refused (UnsupportedField): the volume it reads lives on the build host, filled after the plan is made."},

	{"spec.containers[].resources.limits", Implemented, "cpu as a CFS quota and memory as a memory limit without swap, as the kubelet sets them. ephemeral-storage as the kubelet's eviction manager does: the container's writable layer and log are measured on the host every 15 s, and past the limit the pod is evicted (Failed, reason Evicted, the kubelet's message, a DisruptionTarget condition), as it is when its containers and disk emptyDirs together pass the sum of their limits. hugepages and extended resources cannot be scheduled here: the node does not offer them."},
	{"spec.containers[].resources.requests", Implemented, "cpu as CPU shares, as the kubelet computes them; the other requests are the scheduler's."},
	{"spec.containers[].resources.claims", Refused, "Refused (UnsupportedField): dynamic resource allocation is not supported."},

	{"spec.containers[].volumeMounts[].name", Implemented, "A volume the pod does not declare is refused (InvalidSpec)."},
	{"spec.containers[].volumeMounts[].readOnly", Implemented, "Secret, configMap, downwardAPI and projected volumes are always read-only, as for the kubelet."},
	{"spec.containers[].volumeMounts[].recursiveReadOnly", Implemented, "Disabled, and IfPossible as a plain read-only mount; Enabled is refused (UnsupportedField): podman 4.3 has no recursive read-only mounts."},
	{"spec.containers[].volumeMounts[].mountPath", Implemented, "Must be absolute (InvalidSpec otherwise)."},
	{"spec.containers[].volumeMounts[].subPath", Implemented, "Checked on the host just before the container is created: a symlink leading out of the volume fails it (CreateContainerConfigError)."},
	{"spec.containers[].volumeMounts[].mountPropagation", Implemented, "None; HostToContainer and Bidirectional are refused (UnsupportedField)."},
	{"spec.containers[].volumeMounts[].subPathExpr", Refused, "Refused (UnsupportedField)."},
	{"spec.containers[].volumeMounts[].bindMountOptions", Refused, "Refused (UnsupportedField)."},

	{"spec.containers[].securityContext.capabilities", Implemented, "add and drop, as podman capabilities."},
	{"spec.containers[].securityContext.capabilities.add", Implemented, "Added to podman's default set."},
	{"spec.containers[].securityContext.capabilities.drop", Implemented, "Dropped from podman's default set (ALL drops all)."},
	{"spec.containers[].securityContext.privileged", Implemented, "A privileged podman container."},
	{"spec.containers[].securityContext.seLinuxOptions", Refused, "Refused (UnsupportedField) when set."},
	{"spec.containers[].securityContext.windowsOptions", Ignored, "Windows only; the kubelet on Linux ignores it too."},
	{"spec.containers[].securityContext.runAsUser", Implemented, "The container's user (the pod's runAsUser by default)."},
	{"spec.containers[].securityContext.runAsGroup", Implemented, "The container's group; without a runAsUser it is refused (UnsupportedField)."},
	{"spec.containers[].securityContext.runAsNonRoot", Implemented, "Needs an explicit runAsUser (the image's USER is not checked): refused (UnsupportedField) without one, and a runAsUser of 0 fails the pod (CreateContainerConfigError)."},
	{"spec.containers[].securityContext.readOnlyRootFilesystem", Implemented, "A read-only root, without the tmpfs podman would add on /tmp, /var/tmp and /run."},
	{"spec.containers[].securityContext.allowPrivilegeEscalation", Implemented, "false sets no_new_privs."},
	{"spec.containers[].securityContext.procMount", Implemented, "Default; Unmasked is refused (UnsupportedField)."},
	{"spec.containers[].securityContext.seccompProfile", Implemented, "RuntimeDefault (podman's default profile); other types are refused (UnsupportedField)."},
	{"spec.containers[].securityContext.appArmorProfile", Implemented, "RuntimeDefault (podman's default profile); other types are refused (UnsupportedField)."},

	// Volumes: the volume, then each source as a whole, then the fields of
	// the sources rbn implements.
	{"spec.volumes[].name", Implemented, "Names the podman volume rbn-<pod UID>-<name>."},
	{"spec.volumes[].hostPath", Implemented, "A bind mount of a path at or below the node's hostPathAllowlist; any other path is refused (HostPathNotAllowed)."},
	{"spec.volumes[].emptyDir", Implemented, "A podman volume removed with the pod, and emptied on the host once the pod has ended (as the kubelet tears an ended pod's volumes down; its containers and logs stay until the pod is deleted); medium Memory is a tmpfs held by the pod's infra container, emptied the same way."},
	{"spec.volumes[].gcePersistentDisk", Refused, whyVolume},
	{"spec.volumes[].awsElasticBlockStore", Refused, whyVolume},
	{"spec.volumes[].gitRepo", Refused, whyVolume},
	{"spec.volumes[].secret", Implemented, "Written into a podman volume before the first container that mounts it starts; a missing Secret or key keeps the pod waiting (CreateContainerConfigError) unless optional. Kept up to date as by a kubelet: rendered again from the Secret about every minute and, when it changed, swapped in atomically (kubelet's ..data layout, see docs/operations.md); a subPath mount keeps what its container started with, as on a kubelet. A Secret deleted later leaves the last content (FailedMount event)."},
	{"spec.volumes[].nfs", Refused, whyVolume},
	{"spec.volumes[].iscsi", Refused, whyVolume},
	{"spec.volumes[].glusterfs", Refused, whyVolume},
	{"spec.volumes[].persistentVolumeClaim", Implemented, "A bind mount of the claim's PersistentVolume on the host: a volume of rbn's provisioner (rbn.dev/host-local, below the node's spec.volumes.root, its file system mounted again after a host reboot), or a local or hostPath PersistentVolume inside the node's hostPathAllowlist (resolved on the host). A claim missing, unbound or being deleted keeps the pod waiting (ContainerCreating, FailedMount events); a volume of any other kind, or a block volume, fails the pod (UnsupportedVolume), naming the claim and its volume. See docs/volumes.md."},
	{"spec.volumes[].persistentVolumeClaim.claimName", Implemented, "Read from the pod's namespace, with its PersistentVolume."},
	{"spec.volumes[].persistentVolumeClaim.readOnly", Implemented, "Every mount of the volume is read-only."},
	{"spec.volumes[].rbd", Refused, whyVolume},
	{"spec.volumes[].flexVolume", Refused, whyVolume},
	{"spec.volumes[].cinder", Refused, whyVolume},
	{"spec.volumes[].cephfs", Refused, whyVolume},
	{"spec.volumes[].flocker", Refused, whyVolume},
	{"spec.volumes[].downwardAPI", Implemented, "Written before the first container that mounts it starts. Fields known only once the pod runs (status.podIP, status.hostIP) are refused (UnsupportedField). Kept up to date as by a kubelet: rendered again at the pod's next sync after its labels or annotations change, and about every minute, and, when it changed, swapped in atomically (kubelet's ..data layout, see docs/operations.md); a subPath mount keeps what its container started with, as on a kubelet."},
	{"spec.volumes[].fc", Refused, whyVolume},
	{"spec.volumes[].azureFile", Refused, whyVolume},
	{"spec.volumes[].configMap", Implemented, "Written into a podman volume before the first container that mounts it starts; a missing ConfigMap or key keeps the pod waiting (CreateContainerConfigError) unless optional. Kept up to date as by a kubelet: rendered again from the ConfigMap about every minute and, when it changed, swapped in atomically (kubelet's ..data layout, see docs/operations.md); a subPath mount keeps what its container started with, as on a kubelet. A ConfigMap deleted later leaves the last content (FailedMount event)."},
	{"spec.volumes[].vsphereVolume", Refused, whyVolume},
	{"spec.volumes[].quobyte", Refused, whyVolume},
	{"spec.volumes[].azureDisk", Refused, whyVolume},
	{"spec.volumes[].photonPersistentDisk", Refused, whyVolume},
	{"spec.volumes[].projected", Implemented, "secret, configMap, downwardAPI and serviceAccountToken sources, written as a secret volume is."},
	{"spec.volumes[].portworxVolume", Refused, whyVolume},
	{"spec.volumes[].scaleIO", Refused, whyVolume},
	{"spec.volumes[].storageos", Refused, whyVolume},
	{"spec.volumes[].csi", Refused, whyVolume},
	{"spec.volumes[].ephemeral", Refused, whyVolume},
	{"spec.volumes[].image", Refused, whyVolume},

	{"spec.volumes[].hostPath.path", Implemented, "Must lie at or below an entry of the node's hostPathAllowlist (HostPathNotAllowed otherwise); mounted in clean form."},
	{"spec.volumes[].hostPath.type", Implemented, "Checked on the host (GNU stat) before the pod's sandbox is created, as the kubelet checks it before mounting: DirectoryOrCreate and FileOrCreate create a missing path, and every type then requires the path to be what it names; a failed check keeps the pod waiting with FailedMount events and is retried. Empty (the default) checks nothing: the path is bind-mounted as it is, and must exist. A type the API does not define is refused (InvalidSpec)."},

	{"spec.volumes[].emptyDir.medium", Implemented, "\"\" (the host's disk) or Memory (a tmpfs); HugePages are refused (UnsupportedVolume)."},
	{"spec.volumes[].emptyDir.sizeLimit", Implemented, "Bounds a Memory emptyDir's tmpfs (with the pod's memory limit, as the kubelet does). On disk the directory is measured on the host every 15 s and the pod evicted past the limit, as by the kubelet (Failed, reason Evicted, the kubelet's message)."},
	{"spec.volumes[].emptyDir.mode", Refused, "Refused (UnsupportedVolume): podman creates a volume's directory with its own mode."},

	{"spec.volumes[].configMap.name", Implemented, "Read from the pod's namespace."},
	{"spec.volumes[].configMap.items", Implemented, "Only the listed keys, at their paths."},
	{"spec.volumes[].configMap.defaultMode", Implemented, "The files' mode (0644 by default)."},
	{"spec.volumes[].configMap.optional", Implemented, "A missing ConfigMap or key is skipped instead of waited for."},
	{"spec.volumes[].configMap.defaultUser", Refused, whyFileOwner},
	{"spec.volumes[].secret.secretName", Implemented, "Read from the pod's namespace."},
	{"spec.volumes[].secret.items", Implemented, "Only the listed keys, at their paths."},
	{"spec.volumes[].secret.defaultMode", Implemented, "The files' mode (0644 by default)."},
	{"spec.volumes[].secret.optional", Implemented, "A missing Secret or key is skipped instead of waited for."},
	{"spec.volumes[].secret.defaultUser", Refused, whyFileOwner},
	{"spec.volumes[].downwardAPI.items", Implemented, "As for env (fieldRef, resourceFieldRef naming a container), without the pod's and host's IPs."},
	{"spec.volumes[].downwardAPI.defaultMode", Implemented, "The files' mode (0644 by default)."},
	{"spec.volumes[].downwardAPI.defaultUser", Refused, whyFileOwner},
	{"spec.volumes[].projected.sources", Implemented, "Each source below (spec.volumes[].projected.sources[].*)."},
	{"spec.volumes[].projected.defaultMode", Implemented, "The files' mode (0644 by default)."},
	{"spec.volumes[].projected.defaultUser", Refused, whyFileOwner},

	{"spec.volumes[].configMap.items[].key", Implemented, "The key to write."},
	{"spec.volumes[].configMap.items[].path", Implemented, "Relative, without \"..\" (InvalidSpec otherwise)."},
	{"spec.volumes[].configMap.items[].mode", Implemented, "The file's mode."},
	{"spec.volumes[].configMap.items[].user", Refused, whyFileOwner},
	{"spec.volumes[].downwardAPI.items[].path", Implemented, "Relative, without \"..\" (InvalidSpec otherwise)."},
	{"spec.volumes[].downwardAPI.items[].fieldRef", Implemented, "metadata.name, namespace, uid, labels, annotations (whole or one key), spec.nodeName, spec.serviceAccountName; others are refused (UnsupportedField)."},
	{"spec.volumes[].downwardAPI.items[].resourceFieldRef", Implemented, "As for env, naming a container."},
	{"spec.volumes[].downwardAPI.items[].mode", Implemented, "The file's mode."},
	{"spec.volumes[].downwardAPI.items[].user", Refused, whyFileOwner},

	{"spec.volumes[].projected.sources[].secret", Implemented, "As a secret volume (name, items, optional); the items' user is refused as for a secret volume."},
	{"spec.volumes[].projected.sources[].downwardAPI", Implemented, "As a downwardAPI volume (items); the items' user is refused as there."},
	{"spec.volumes[].projected.sources[].configMap", Implemented, "As a configMap volume (name, items, optional); the items' user is refused as there."},
	{"spec.volumes[].projected.sources[].serviceAccountToken", Implemented, "A token requested for the pod (TokenRequest, the first projection's audience and expirationSeconds), renewed as kubelet's token manager does, once older than 80% of its expirationSeconds or than 24 hours, and swapped in atomically; a failed renewal is retried every 10 s with a FailedMount event, the pod keeps running (and the old token until it expires). A second projection asking for another audience or lifetime is refused (UnsupportedVolume)."},
	{"spec.volumes[].projected.sources[].clusterTrustBundle", Refused, "Refused (UnsupportedVolume)."},
	{"spec.volumes[].projected.sources[].podCertificate", Refused, "Refused (UnsupportedVolume)."},
	{"spec.volumes[].projected.sources[].serviceAccountToken.audience", Implemented, "The token's audience (the API server's by default)."},
	{"spec.volumes[].projected.sources[].serviceAccountToken.expirationSeconds", Implemented, "The token's requested lifetime (1 hour by default); not rotated."},
	{"spec.volumes[].projected.sources[].serviceAccountToken.path", Implemented, "Relative, without \"..\" (InvalidSpec otherwise)."},
	{"spec.volumes[].projected.sources[].serviceAccountToken.user", Refused, whyFileOwner},
}, ephemeralContainerFields()...)

const whyVolume = "Refused (UnsupportedVolume): rbn provides emptyDir, hostPath, persistentVolumeClaim, secret, configMap, downwardAPI and projected volumes only."

// ephemeralContainerFields are the rows of spec.ephemeralContainers[]: as
// the app containers' same fields. Spelled out, not derived from the type,
// so that TestFieldTable sees a field added to it.
func ephemeralContainerFields() []FieldDecision {
	names := []string{
		"name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources",
		"resizePolicy", "restartPolicy", "restartPolicyRules", "volumeMounts", "volumeDevices",
		"livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "terminationMessagePath",
		"terminationMessagePolicy", "imagePullPolicy", "securityContext", "stdin", "stdinOnce", "tty",
		"targetContainerName",
	}
	out := make([]FieldDecision, 0, len(names))
	for _, n := range names {
		d := FieldDecision{"spec.ephemeralContainers[]." + n, Implemented, "As spec.containers[]." + n + " (the API refuses what an ephemeral container may not set)."}
		if n == "targetContainerName" {
			d.Why = "The debug container shares that container's process namespace (podman's --pid container:ID), found running when the debug container is created."
		}
		out = append(out, d)
	}
	return out
}
