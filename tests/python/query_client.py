"""Calls a running upid collector from Python with grpcio, the way any
user's script would: stubs generated from proto/ (by the test, into a
temporary directory given as --stubs), plus the standard gRPC health check.

Prints one JSON object on stdout with what it got; exits non-zero with a
message on stderr when a call fails.
"""

import argparse
import json
import sys


def health_status(channel):
    """grpc.health.v1.Health/Check for the whole server, without generated
    stubs: the request is the empty message (service ""), the reply holds
    field 1 (status) as a varint."""
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    reply = check(b"", timeout=10)
    if len(reply) >= 2 and reply[0] == 0x08:
        return {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}.get(
            reply[1], str(reply[1])
        )
    return "UNKNOWN" if not reply else "UNPARSEABLE:" + reply.hex()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True, help="HOST:PORT of the collector")
    parser.add_argument("--stubs", required=True, help="directory of the generated stubs")
    args = parser.parse_args()

    sys.path.insert(0, args.stubs)
    import grpc
    from upid.v1 import query_pb2, query_pb2_grpc, samples_pb2

    with grpc.insecure_channel(args.target) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        query = query_pb2_grpc.QueryServiceStub(channel)
        info = query.GetServerInfo(query_pb2.GetServerInfoRequest(), timeout=30)
        nodes = query.ListNodes(query_pb2.ListNodesRequest(), timeout=30)
        top = query.Top(query_pb2.TopRequest(), timeout=30)
        out = {
            "health": health_status(channel),
            "server_info": {
                "collector_version": info.collector_version,
                "store_path": info.store_path,
                "server_unix_ns": info.server_unix_ns,
                "tls": info.tls,
                "auth_required": info.auth_required,
            },
            "nodes": [
                {
                    "node_name": n.node_name,
                    "agent_id": n.agent_id,
                    "cgroup_layout": samples_pb2.CgroupLayout.Name(n.cgroup_layout),
                    "cpu_count": n.cpu_count,
                    "memory_total_bytes": n.memory_total_bytes,
                    "last_seq": n.last_seq,
                }
                for n in nodes.nodes
            ],
            "top": [
                {
                    "node_name": c.ref.node_name,
                    "cgroup_path": c.ref.identity.cgroup_path,
                    "cpu_cores": c.latest.cpu_cores if c.latest.HasField("cpu_cores") else None,
                }
                for c in top.containers
            ],
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
