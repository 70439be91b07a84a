"""HTTP in and out. A token request goes down these modules in order:

1. :mod:`.credentials`: the Authorization header (or the form's user and password);
2. :mod:`.request`: the whole request read into one immutable :class:`.request.TokenRequest`;
3. :mod:`.token_endpoint`: decided by :mod:`auth_service.service`, recorded in the audit log and
   the metrics, and answered;
4. :mod:`.responses`: the answer's bytes, refusals as :mod:`auth_service.errors` says.

:mod:`.operations` serves ``/health`` and ``/metrics``; :mod:`.proxy_decision` answers nginx's
``auth_request`` in proxy mode (the decision itself is :mod:`auth_service.proxy`).
"""

# The key of the app's TokenService in ``app.extensions``, for the endpoints and commands that
# need the service the app was built with.
EXTENSION = "auth_service"
