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
	certificatesv1informers "k8s.io/client-go/informers/certificates/v1"
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
	// Patience is how long a request waits for what the approver's view
	// may lag behind rbn-kubelet's in before it is denied: a
	// RemoteBuildNode for the name, a node Service with the ClusterIP the
	// request names. Default 1 minute; it looks again every Recheck
	// meanwhile (default 5 s).
	Patience, Recheck time.Duration
	Clock             clock.PassiveClock
	Log               *slog.Logger
}

// Signers whose requests the Approver judges.
var signers = []string{certificatesv1.KubeAPIServerClientKubeletSignerName, certificatesv1.KubeletServingSignerName}

// Approver approves or denies rbn-kubelet's node identity and serving
// certificate requests as Decide judges them, as they come.
type Approver struct {
	cfg ApproverConfig
	// csrs has one informer per signer, each with a field selector on
	// spec.signerName: a field selector matches one value only, and
	// dropping it would have the approver cache every CSR of the cluster
	// (those of cert-manager's or a service mesh's signers included) to
	// judge two signers' few.
	csrs  map[string]cache.SharedIndexInformer
	queue workqueue.TypedRateLimitingInterface[csrKey]
}

// csrKey names a request and the informer that holds it.
type csrKey struct{ signer, name string }

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
	a := &Approver{cfg: cfg, csrs: map[string]cache.SharedIndexInformer{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[csrKey](),
			workqueue.TypedRateLimitingQueueConfig[csrKey]{Name: "rbn-node-identity"})}
	for _, signer := range signers {
		inf := certificatesv1informers.NewFilteredCertificateSigningRequestInformer(cfg.Client, 0, cache.Indexers{}, func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.signerName", signer).String()
		})
		enqueue := func(obj any) {
			// The signer is checked again for clients that ignore field
			// selectors (client-go's fake): each request is judged once.
			if csr, ok := obj.(*certificatesv1.CertificateSigningRequest); ok && csr.Spec.SignerName == signer && pending(csr) {
				a.queue.Add(csrKey{signer: signer, name: csr.Name})
			}
		}
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) }})
		a.csrs[signer] = inf
	}
	return a
}

// Run approves until ctx ends.
func (a *Approver) Run(ctx context.Context) error {
	defer a.queue.ShutDown()
	var synced []cache.InformerSynced
	for _, inf := range a.csrs {
		go inf.RunWithContext(ctx)
		synced = append(synced, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
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
	key, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(key)
	retry, err := a.handle(ctx, key)
	switch {
	case err != nil:
		a.cfg.Log.Warn("node identity request not decided, retrying", "csr", key.name, "signer", key.signer, "err", err)
		a.queue.AddRateLimited(key)
	case retry > 0:
		a.queue.AddAfter(key, retry)
	default:
		a.queue.Forget(key)
	}
	return true
}

// handle decides the request key names, if it is still pending; retry > 0
// asks to look again then.
func (a *Approver) handle(ctx context.Context, key csrKey) (retry time.Duration, err error) {
	obj, exists, err := a.csrs[key.signer].GetStore().GetByKey(key.name)
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
		if wait := a.cfg.Patience - a.cfg.Clock.Since(csr.CreationTimestamp.Time); awaited(v.Reason) && wait > 0 {
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
	a.cfg.Log.Info("node identity request "+map[Decision]string{Approve: "approved", Deny: "denied"}[v.Decision],
		"csr", csr.Name, "signer", csr.Spec.SignerName, "reason", v.Reason, "message", v.Message)
	return 0, nil
}

// awaited: a denial for what the approver's caches may not show yet
// (rbn-kubelet made the RemoteBuildNode's Node or the node's Service a
// moment ago, or the Service was made anew with another ClusterIP), which
// a request is given Patience to meet.
func awaited(reason string) bool {
	switch reason {
	case ReasonNoRemoteBuildNode, ReasonServiceIPUnknown, ReasonServiceIPMismatch:
		return true
	}
	return false
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
