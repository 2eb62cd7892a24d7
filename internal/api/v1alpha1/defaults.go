package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

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
	if out.ContainerLogMaxSize == nil {
		out.ContainerLogMaxSize = ptr.To(DefaultContainerLogMaxSize.DeepCopy())
	}
	if out.ImageGC == nil {
		out.ImageGC = &ImageGCSpec{}
	}
	if gc := out.ImageGC; gc != nil {
		if gc.HighThresholdPercent == nil {
			gc.HighThresholdPercent = ptr.To[int32](DefaultImageGCHighThresholdPercent)
		}
		if gc.LowThresholdPercent == nil {
			gc.LowThresholdPercent = ptr.To[int32](DefaultImageGCLowThresholdPercent)
		}
		if gc.MinimumAge == nil {
			gc.MinimumAge = &metav1.Duration{Duration: DefaultImageMinimumGCAge}
		}
		if gc.MaximumAge == nil {
			gc.MaximumAge = &metav1.Duration{}
		}
	}
	if out.DiskPressure == nil {
		out.DiskPressure = &DiskPressureSpec{}
	}
	if out.DiskPressure.AvailableBelow == "" {
		out.DiskPressure.AvailableBelow = DefaultDiskAvailableBelow
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
