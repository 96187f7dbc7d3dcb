// Which database a WorkerPool's workers drain, and the Secret they connect with.

package controllers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// reasonDatabaseSecret: the pool names no Secret and its database shares none.
const reasonDatabaseSecret = "DatabaseSecretMissing"

// sharedSecretKey is the key of the URL in a copied database Secret: the default one.
const sharedSecretKey = defaultDatabaseKey

// SharedSecretName is the Secret a WorkerPool gets its database's connection in (roleMode Shared).
func SharedSecretName(pool string) string { return pool + "-database" }

// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create;update

// poolDatabase is what poolDatabase found.
type poolDatabase struct {
	db Database
	// dbErr: the namespace has no database (the backlog cannot be read).
	dbErr error
	conn  workerConnection
	// problem: there is no Secret to give the workers (a message for the Ready condition).
	problem string
}

// poolDatabase is the namespace's database and the Secret the pool's workers connect with: spec.database, else
// (roleMode Shared) a copy of the database's Secret in the pool's namespace, kept current at every reading.
func (r *WorkerPoolReconciler) poolDatabase(ctx context.Context, pool *taskerv1alpha1.WorkerPool) poolDatabase {
	var pd poolDatabase
	if r.Databases == nil {
		pd.dbErr = errNoDatabases
	} else {
		pd.db, pd.dbErr = r.Databases.ForNamespace(ctx, pool.Namespace)
	}
	if ref := pool.Spec.Database; ref != nil {
		// The workers' connection is the pool's own Secret: nothing of the operator's to roll them for.
		pd.conn.Secret = *ref
		if pd.conn.Secret.Key == "" {
			pd.conn.Secret.Key = defaultDatabaseKey
		}
		return pd
	}
	switch {
	case pd.dbErr != nil:
		pd.problem = "spec.database is not set and the namespace has no database to take it from: " + pd.dbErr.Error()
		return pd
	case pd.db.WorkerSecret == nil:
		pd.problem = fmt.Sprintf("spec.database is required: the namespace's database %s does not share its "+
			"Secret with WorkerPools (the manager's --database-url, or a TaskerDatabase with roleMode PerPool)", pd.db.Name)
		return pd
	}
	hash, err := r.copySecret(ctx, pool, *pd.db.WorkerSecret)
	if err != nil {
		pd.problem = fmt.Sprintf("could not copy database %s's Secret into the namespace: %s", pd.db.Name, err)
		return pd
	}
	pd.conn = workerConnection{Secret: taskerv1alpha1.DatabaseSecretRef{SecretName: SharedSecretName(pool.Name),
		Key: sharedSecretKey}, Database: pd.db.Name, SecretHash: hash}
	return pd
}

// copySecret writes the database's connection into the pool's Secret (owned by the pool) when it differs, and
// returns a hash of it. Both are read uncached: the operator does not watch Secrets.
func (r *WorkerPoolReconciler) copySecret(ctx context.Context, pool *taskerv1alpha1.WorkerPool,
	from taskerv1alpha1.NamespacedSecretKeyRef) (string, error) {
	url, err := r.readSecret(ctx, from)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(url)
	return hex.EncodeToString(sum[:8]), r.writeSecret(ctx, pool, url)
}

func (r *WorkerPoolReconciler) readSecret(ctx context.Context, from taskerv1alpha1.NamespacedSecretKeyRef) ([]byte, error) {
	var src corev1.Secret
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: from.Namespace, Name: from.Name}, &src); err != nil {
		return nil, fmt.Errorf("reading Secret %s/%s: %s", from.Namespace, from.Name, apiErrorMessage(err))
	}
	url, ok := src.Data[from.Key]
	if !ok || len(url) == 0 {
		return nil, fmt.Errorf("the Secret %s/%s has no key %q", from.Namespace, from.Name, from.Key)
	}
	return url, nil
}

func (r *WorkerPoolReconciler) writeSecret(ctx context.Context, pool *taskerv1alpha1.WorkerPool, url []byte) error {
	var dst corev1.Secret
	key := types.NamespacedName{Namespace: pool.Namespace, Name: SharedSecretName(pool.Name)}
	err := r.APIReader.Get(ctx, key, &dst)
	switch {
	case apierrors.IsNotFound(err):
		dst = corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
				Labels: map[string]string{LabelWorkerPool: pool.Name, labelManagedBy: managerName}},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{sharedSecretKey: url},
		}
		if err := controllerutil.SetControllerReference(pool, &dst, r.Scheme); err != nil {
			return err
		}
		if err := r.Create(ctx, &dst); err != nil {
			return fmt.Errorf("creating Secret %s: %s", key.Name, apiErrorMessage(err))
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading Secret %s: %s", key.Name, apiErrorMessage(err))
	case !metav1.IsControlledBy(&dst, pool):
		return fmt.Errorf("the Secret %s exists and is not controlled by this WorkerPool; delete or rename it", key.Name)
	case bytes.Equal(dst.Data[sharedSecretKey], url):
		return nil
	}
	dst.Data = map[string][]byte{sharedSecretKey: url}
	if err := r.Update(ctx, &dst); err != nil {
		return fmt.Errorf("updating Secret %s: %s", key.Name, apiErrorMessage(err))
	}
	return nil
}
