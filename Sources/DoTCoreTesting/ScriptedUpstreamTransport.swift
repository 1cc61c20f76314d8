import DoTCore
import NIOConcurrencyHelpers
import NIOCore

/// An in-memory ``UpstreamTransport`` whose behaviour a test sets and changes at any time: answer,
/// answer with a response code, fail with an ``UpstreamError``, or stay silent until the deadline.
///
/// It completes on the event loop it is given and never touches the network, so it works on an
/// `EmbeddedEventLoop` with a manual clock.
public final class ScriptedUpstreamTransport: UpstreamTransport {
    /// What the transport does with each query.
    public enum Behaviour: Sendable, Equatable {
        /// Reply as ``TestDoTServer/answer(_:)`` does.
        case answer
        /// Reply with the query's ID and question and this response code.
        case respond(DNSResponseCode)
        /// Fail at once with this error code.
        case fail(UpstreamError.Code)
        /// Never reply; fail with ``UpstreamError/Code/timeout`` at the deadline.
        case silence
    }

    /// The name used in errors.
    public let name: String
    private let state: NIOLockedValueBox<(behaviour: Behaviour, queries: Int)>

    /// Creates a transport.
    ///
    /// - Parameters:
    ///   - name: Its name in errors.
    ///   - behaviour: What it does at first; it answers by default.
    public init(name: String = "scripted", behaviour: Behaviour = .answer) {
        self.name = name
        self.state = NIOLockedValueBox((behaviour, 0))
    }

    /// What the transport does with the next query.
    public var behaviour: Behaviour {
        get { state.withLockedValue { $0.behaviour } }
        set { state.withLockedValue { $0.behaviour = newValue } }
    }

    /// Queries received so far.
    public var queryCount: Int { state.withLockedValue { $0.queries } }

    public func send(
        _ query: ParsedDNSMessage,
        deadline: NIODeadline,
        on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<ParsedDNSMessage, UpstreamError>) -> Void
    ) {
        let behaviour = state.withLockedValue { state in
            state.queries += 1
            return state.behaviour
        }
        let reply: Result<ParsedDNSMessage, UpstreamError>
        switch behaviour {
        case .answer, .respond:
            reply = Result { () throws(any Error) -> ParsedDNSMessage in
                let message = try DNSMessage(decoding: query.buffer)
                var answer = TestDoTServer.answer(message)
                if case .respond(let code) = behaviour {
                    answer = DNSMessage(header: message.header, questions: message.questions)
                    answer.header.isResponse = true
                    answer.header.responseCode = code
                }
                return try ParsedDNSMessage(answer.encoded())
            }.mapError { UpstreamError(.malformedQuery, upstream: name, detail: "\($0)") }
        case .fail(let code):
            reply = .failure(UpstreamError(code, upstream: name, detail: "scripted failure"))
        case .silence:
            eventLoop.scheduleTask(deadline: deadline) {
                completion(.failure(UpstreamError(.timeout, upstream: self.name, detail: "scripted silence")))
            }
            return
        }
        if eventLoop.inEventLoop {
            completion(reply)
        } else {
            eventLoop.execute { completion(reply) }
        }
    }
}
