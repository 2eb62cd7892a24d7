package v1alpha1

// Default fills unset optional fields. It is the one place defaults live and
// returns a copy: the stored object is never modified.
func Default(in *RemoteBuildNodeSpec) *RemoteBuildNodeSpec {
	out := in.DeepCopy()
	if out.Port == 0 {
		out.Port = DefaultPort
	}
	if out.User == "" {
		out.User = DefaultUser
	}
	if out.PodmanSocket == "" {
		out.PodmanSocket = DefaultPodmanSocket
	}
	if out.ImagePull == "" {
		out.ImagePull = ImagePullDirect
	}
	if out.Volumes == nil {
		out.Volumes = &VolumesSpec{}
	}
	if out.Volumes.Root == "" {
		out.Volumes.Root = DefaultVolumeRoot
	}
	if out.Volumes.SizeLimit == "" {
		out.Volumes.SizeLimit = VolumeSizeLimitLoopFile
	}
	if out.MaxPods == 0 {
		out.MaxPods = DefaultMaxPods
	}
	// nil means "not set": the default taint. An empty list is a choice.
	if out.Taints == nil {
		out.Taints = append(out.Taints, DefaultTaint)
	}
	return out
}
