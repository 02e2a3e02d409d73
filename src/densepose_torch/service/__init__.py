"""DensePose over HTTP: `densepose serve` (FastAPI + uvicorn).

    from densepose_torch.service.app import create_app
    from densepose_torch.service.settings import ServiceSettings
    app = create_app(ServiceSettings(), load_predictor)   # any ASGI server can run it

Modules: `settings` (limits and defaults), `app` (the application: error replies, request
metrics), `routes` (the route table and one handler per route), `state` (what the routes share:
the model loaded at startup, readiness, the queue, the metrics), `batching`
(the bounded queue that batches requests onto the one shared model, in a worker thread),
`uploads` (reading bodies and decoding images within limits), `replies` (JSON, IUV PNG, npz and
render bodies), `legacy` (the path-based `POST /densepose` of the project this started from),
`metrics` (Prometheus text), `server` (uvicorn settings), `static/index.html` (the web page).
FastAPI and uvicorn come with the `serve` extra: `pip install 'densepose-torch[serve]'`; this
package file imports neither, so `densepose` sub-commands work without them.
"""
