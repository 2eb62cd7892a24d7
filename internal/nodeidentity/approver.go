package nodeidentity

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

// ApproverConfig configures an Approver.
type ApproverConfig struct {
	Client kubernetes.Interface
	Policy Policy
	Nodes  Nodes
	// Patience is how long a request naming no RemoteBuildNode waits for
	// one before it is denied: the approver's view of RemoteBuildNodes may
	// lag behind rbn-kubelet's. Default 1 minute; it looks again every
	// Recheck meanwhile (default 5 s).
	Patience, Recheck time.Duration
	Clock             clock.PassiveClock
	Log               *slog.Logger
}

// Approver approves or denies rbn-kubelet's node identity requests as
// Decide judges them, as they come (an informer on the kubelet client
// signer's CertificateSigningRequests).
type Approver struct {
	cfg   ApproverConfig
	csrs  cache.SharedIndexInformer
	queue workqueue.TypedRateLimitingInterface[string]
}

// NewApprover makes an Approver; Run runs it.
func NewApprover(cfg ApproverConfig) *Approver {
	if cfg.Patience == 0 {
		cfg.Patience = time.Minute
	}
	if cfg.Recheck == 0 {
		cfg.Recheck = 5 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.signerName", certificatesv1.KubeAPIServerClientKubeletSignerName).String()
	}))
	a := &Approver{cfg: cfg, csrs: factory.Certificates().V1().CertificateSigningRequests().Informer(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "rbn-node-identity"})}
	enqueue := func(obj any) {
		if csr, ok := obj.(*certificatesv1.CertificateSigningRequest); ok && pending(csr) {
			a.queue.Add(csr.Name)
		}
	}
	_, _ = a.csrs.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) }})
	return a
}

// Run approves until ctx ends.
func (a *Approver) Run(ctx context.Context) error {
	defer a.queue.ShutDown()
	go a.csrs.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), a.csrs.HasSynced) {
		return ctx.Err()
	}
	go func() {
		<-ctx.Done()
		a.queue.ShutDown()
	}()
	for a.next(ctx) {
	}
	return nil
}

func (a *Approver) next(ctx context.Context) bool {
	name, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(name)
	retry, err := a.handle(ctx, name)
	switch {
	case err != nil:
		a.cfg.Log.Warn("node identity request not decided, retrying", "csr", name, "err", err)
		a.queue.AddRateLimited(name)
	case retry > 0:
		a.queue.AddAfter(name, retry)
	default:
		a.queue.Forget(name)
	}
	return true
}

// handle decides the request name, if it is still pending; retry > 0 asks
// to look again then.
func (a *Approver) handle(ctx context.Context, name string) (retry time.Duration, err error) {
	obj, exists, err := a.csrs.GetStore().GetByKey(name)
	if err != nil || !exists {
		return 0, err
	}
	csr := obj.(*certificatesv1.CertificateSigningRequest)
	if !pending(csr) {
		return 0, nil
	}
	v := Decide(a.cfg.Policy, csr, a.cfg.Nodes)
	switch v.Decision {
	case Ignore:
		return 0, nil
	case Deny:
		if wait := a.cfg.Patience - a.cfg.Clock.Since(csr.CreationTimestamp.Time); v.Reason == ReasonNoRemoteBuildNode && wait > 0 {
			return min(wait, a.cfg.Recheck), nil
		}
	}
	csr = csr.DeepCopy()
	cond := certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: v.Reason, Message: v.Message,
		LastUpdateTime: metav1.NewTime(a.cfg.Clock.Now()),
	}
	if v.Decision == Deny {
		cond.Type = certificatesv1.CertificateDenied
	}
	csr.Status.Conditions = append(csr.Status.Conditions, cond)
	if _, err := a.cfg.Client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		return 0, fmt.Errorf("CertificateSigningRequest %s: %w", csr.Name, err)
	}
	a.cfg.Log.Info("node identity request "+map[Decision]string{Approve: "approved", Deny: "denied"}[v.Decision], "csr", csr.Name, "reason", v.Reason, "message", v.Message)
	return 0, nil
}

// pending: neither approved nor denied (nor failed) yet.
func pending(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		switch c.Type {
		case certificatesv1.CertificateApproved, certificatesv1.CertificateDenied, certificatesv1.CertificateFailed:
			return false
		}
	}
	return true
}
