# The token service's config.py in Kubernetes (README, "config.py" and "Kubernetes").
#
# The settings the registry must agree with are not here but in the environment, which wins over
# this file: ISSUER and SERVICE from the registry-auth-settings ConfigMap, which the registry's
# REGISTRY_AUTH_TOKEN_* read too, KEY_PATH and CERT_PATH where the registry-token-key Secret is
# mounted, and REDIS_URL (deploy/kubernetes/with-redis). Put any other setting here, in an
# overlay's copy of this file: an edit makes a new ConfigMap, which rolls the pods.
#
# BCRYPT_CONCURRENCY (2 by default) should match the token-service container's CPU limit.
