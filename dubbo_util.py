"""The article's dubbo_util: a client for the image-generation service over Dubbo.

Kept importable under the article's name; the code lives in aigc_eval.generation.dubbo.

    from dubbo_util import JsonRpcTransport, ServiceAddress
"""

from aigc_eval.generation.dubbo import (  # noqa: F401  (re-exported under the article's name)
    TRANSPORTS,
    DubboCallError,
    JsonRpcTransport,
    ServiceAddress,
    ServiceError,
    SetupError,
    TelnetTransport,
    TransientError,
    check_registry,
    classify_jsonrpc_failure,
    parse_host_port,
    parse_telnet_reply,
)
